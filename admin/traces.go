package admin

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/propolis-mqtt/propolis/admin/access"
	"github.com/propolis-mqtt/propolis/trace"
)

// Recorder is what the API asks of the trace recorder; *trace.Recorder
// implements it.
type Recorder interface {
	Start(s trace.Spec) (trace.Recording, error)
	Stop(id, reason string) (trace.Recording, error)
	Delete(id string) error
	List() []trace.Recording
	Get(id string) (trace.Recording, error)
	WriteZip(w io.Writer, ids []string, strip func(line []byte) []byte) error
}

var _ Recorder = (*trace.Recorder)(nil)

// traceSpec is a recording's spec, in the body of POST /api/v1/traces and
// in each recording.
type traceSpec struct {
	ClientID        string   `json:"client_id"`
	TopicFilter     string   `json:"topic_filter"`
	Packets         []string `json:"packets"`
	DurationSeconds int64    `json:"duration_seconds"`
	MaxBytes        int64    `json:"max_bytes"`
}

// recording is one trace recording.
type recording struct {
	ID         string     `json:"id"`
	Spec       traceSpec  `json:"spec"`
	State      string     `json:"state"`
	StartedAt  *time.Time `json:"started_at"`
	StoppedAt  *time.Time `json:"stopped_at"`
	StopReason string     `json:"stop_reason"`
	Packets    int64      `json:"packets"`
	Bytes      int64      `json:"bytes"`
	Files      int        `json:"files"`
}

// recordingOf converts rec.
func recordingOf(rec trace.Recording) recording {
	p := rec.Spec.Packets
	if p == nil {
		p = []string{}
	}
	return recording{ID: rec.ID, State: rec.State, StartedAt: timeOrNil(rec.StartedAt), StoppedAt: timeOrNil(rec.StoppedAt),
		StopReason: rec.StopReason, Packets: rec.Packets, Bytes: rec.Bytes, Files: rec.Files,
		Spec: traceSpec{ClientID: rec.Spec.ClientID, TopicFilter: rec.Spec.TopicFilter, Packets: p,
			DurationSeconds: int64(rec.Spec.Duration / time.Second), MaxBytes: rec.Spec.MaxSize}}
}

// recorder returns the recorder, or a 409 when the broker runs without
// one.
func (a *API) recorder() (Recorder, error) {
	if a.o.Recorder == nil {
		return nil, errorf(http.StatusConflict, "trace recordings are off on this broker")
	}
	return a.o.Recorder, nil
}

// traceError maps the recorder's errors to status codes.
func traceError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, trace.ErrNotFound):
		return &httpError{code: http.StatusNotFound, err: err}
	case errors.Is(err, trace.ErrInvalidSpec):
		return &httpError{code: http.StatusBadRequest, err: err}
	case errors.Is(err, trace.ErrNotRecording), errors.Is(err, trace.ErrTotalCap), errors.Is(err, trace.ErrClosed):
		return &httpError{code: http.StatusConflict, err: err}
	}
	return err
}

// traces: GET /api/v1/traces.
func (a *API) traces(_ http.ResponseWriter, _ *request) (int, any, error) {
	list := []recording{}
	if a.o.Recorder != nil {
		for _, r := range a.o.Recorder.List() {
			list = append(list, recordingOf(r))
		}
	}
	return http.StatusOK, map[string]any{"recordings": list}, nil
}

// startTrace: POST /api/v1/traces.
func (a *API) startTrace(_ http.ResponseWriter, r *request) (int, any, error) {
	var body traceSpec
	rec, err := a.recorder()
	if err == nil {
		err = decode(r, &body)
	}
	if err == nil {
		r.details = map[string]any{"client_id": body.ClientID, "topic_filter": body.TopicFilter, "packets": body.Packets,
			"duration_seconds": body.DurationSeconds, "max_bytes": body.MaxBytes}
	}
	var got trace.Recording
	if err == nil {
		switch {
		case body.DurationSeconds < 0:
			err = errorf(http.StatusBadRequest, "duration_seconds: %d is negative", body.DurationSeconds)
		case body.MaxBytes < 0:
			err = errorf(http.StatusBadRequest, "max_bytes: %d is negative", body.MaxBytes)
		default:
			got, err = rec.Start(trace.Spec{ClientID: body.ClientID, TopicFilter: body.TopicFilter, Packets: body.Packets,
				Duration: time.Duration(body.DurationSeconds) * time.Second, MaxSize: body.MaxBytes})
			err = traceError(err)
		}
	}
	a.audit(r, "trace.start", got.ID, err)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, recordingOf(got), nil
}

// stopTrace: POST /api/v1/traces/{id}/stop.
func (a *API) stopTrace(_ http.ResponseWriter, r *request) (int, any, error) {
	id := r.PathValue("id")
	rec, err := a.recorder()
	var got trace.Recording
	if err == nil {
		got, err = rec.Stop(id, "stopped by "+r.who.User)
		err = traceError(err)
	}
	a.audit(r, "trace.stop", id, err)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, recordingOf(got), nil
}

// deleteTrace: DELETE /api/v1/traces/{id}.
func (a *API) deleteTrace(_ http.ResponseWriter, r *request) (int, any, error) {
	id := r.PathValue("id")
	rec, err := a.recorder()
	if err == nil {
		err = traceError(rec.Delete(id))
	}
	a.audit(r, "trace.delete", id, err)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// downloadTraces: GET /api/v1/traces/download, every recording as a zip.
func (a *API) downloadTraces(w http.ResponseWriter, r *request) (int, any, error) {
	return a.download(w, r, nil, "propolis-traces.zip")
}

// downloadTrace: GET /api/v1/traces/{id}/download.
func (a *API) downloadTrace(w http.ResponseWriter, r *request) (int, any, error) {
	id := r.PathValue("id")
	rec, err := a.recorder()
	if err == nil {
		_, err = rec.Get(id)
		err = traceError(err)
	}
	if err != nil {
		a.audit(r, "trace.download", id, err)
		return 0, nil, err
	}
	return a.download(w, r, []string{id}, "propolis-trace-"+id+".zip")
}

// download writes the zip of ids (all when nil), without user properties
// for a caller without userproperties.view.
func (a *API) download(w http.ResponseWriter, r *request, ids []string, name string) (int, any, error) {
	rec, err := a.recorder()
	target := "all"
	if ids != nil {
		target = ids[0]
	}
	if err != nil {
		a.audit(r, "trace.download", target, err)
		return 0, nil, err
	}
	var strip func([]byte) []byte
	if !r.who.Can(access.UserPropertiesView) {
		strip = trace.StripUserProperties
	}
	a.audit(r, "trace.download", target, nil)
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
	w.Header().Set("Cache-Control", "no-store")
	// A zip of every recording outlasts the endpoint's write timeout.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	if err := rec.WriteZip(w, ids, strip); err != nil {
		// The status is sent; the client sees a cut zip.
		a.log.Error("admin API: trace download", "recordings", target, "error", err)
	}
	return 0, nil, errHandled
}
