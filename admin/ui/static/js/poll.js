// poll.js: the one scheduler of a polling page (overview, extensions,
// trace recordings). A page has one Poller: it runs the page's load
// function now and then every interval milliseconds after the previous
// run ended, never two runs at once, and never while the tab is hidden
// (each /api/v1/broker call walks every session: a forgotten tab must not
// cost that every two seconds). When the tab shows again it runs at once.
// Its state is written to the body's data-poll attribute ("running",
// "waiting", "paused"; removed by stop) for tests to wait on.

export class Poller {
  // fn is an async function (the page's load); it is never called again
  // after stop().
  constructor(fn, interval) {
    this.fn = fn;
    this.interval = interval;
    this.timer = 0;
    this.running = false; // a run is in flight
    this.again = false; // now() was asked during a run: run once more after it
    this.stopped = false;
    this.onVisibility = () => {
      if (document.hidden) {
        clearTimeout(this.timer);
        this.timer = 0;
        if (!this.running) this.mark("paused");
      } else {
        this.now();
      }
    };
    document.addEventListener("visibilitychange", this.onVisibility);
  }

  // now runs the load function at once (after an action), replacing the
  // pending timer; during a run it asks for one more run right after it,
  // so that a page never has two loops.
  now() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = 0;
    if (this.running) {
      this.again = true;
      return;
    }
    if (document.hidden) {
      this.mark("paused"); // runs when the tab shows again
      return;
    }
    this.run();
  }

  mark(state) {
    if (!this.stopped) document.body.dataset.poll = state;
  }

  async run() {
    this.running = true;
    this.again = false;
    this.mark("running");
    try {
      await this.fn();
    } finally {
      this.running = false;
      if (!this.stopped) {
        if (this.again) {
          this.now();
        } else if (document.hidden) {
          this.mark("paused");
        } else {
          this.timer = setTimeout(() => this.now(), this.interval);
          this.mark("waiting");
        }
      }
    }
  }

  // stop ends the polling (the user left the page).
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    delete document.body.dataset.poll;
    document.removeEventListener("visibilitychange", this.onVisibility);
  }
}
