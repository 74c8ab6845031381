// A test extension using the AssemblyScript SDK's interceptor, event and
// lifecycle helpers; host/sdk_examples_test.go loads it in a broker and
// drives it with MQTT 5 clients (the same behaviour as the C SDK's
// sdk/c/test/interceptors.c):
//
// - authenticate: ALLOW, unless the client id is "deny-me";
// - intercept_connack: adds the user property via=as-sdk;
// - intercept_publish_inbound: moves legacy/<rest> to modern/<rest> and
//   appends moved=yes; refuses a payload "drop" with 0x99;
// - intercept_publish_outbound: adds seen-by=<subscriber>;
// - intercept_subscribe: caps the QoS at 1;
// - on_event, tick: log a line.

export { propolis_abi_v1, propolis_buffer } from "../assembly/index";
import {
  Code,
  Field,
  LogLevel,
  Pair,
  allow,
  connackRecord,
  connectRecord,
  deny,
  eventName,
  eventRecord,
  log,
  messageRecord,
  next,
  packetSetInt,
  packetSetProperties,
  packetSetString,
  setReason,
  subscriptionRecord,
} from "../assembly/index";

export function propolis_authenticate(len: i32): u32 {
  const c = connectRecord(len);
  if (c.clientId == "deny-me") {
    setReason("as-sdk test says no");
    return deny();
  }
  return allow();
}

function appended(props: Pair[], key: string, value: string): Pair[] {
  const out = props.slice(0);
  out.push(new Pair(key, value));
  return out;
}

export function propolis_intercept_connack(len: i32): u32 {
  const c = connackRecord(len);
  packetSetProperties(appended(c.userProperties, "via", "as-sdk"));
  return next();
}

export function propolis_intercept_publish_inbound(len: i32): u32 {
  const m = messageRecord(len);
  if (String.UTF8.decode(m.payload.buffer) == "drop") {
    setReason("payload refused by the AssemblyScript SDK test");
    return deny(Code.PAYLOAD_FORMAT_INVALID);
  }
  if (m.topic.startsWith("legacy/")) {
    packetSetString(Field.TOPIC, "modern/" + m.topic.substring(7));
    packetSetProperties(appended(m.userProperties, "moved", "yes"));
  }
  return next();
}

export function propolis_intercept_publish_outbound(len: i32): u32 {
  const m = messageRecord(len);
  packetSetProperties(appended(m.userProperties, "seen-by", m.clientId));
  return next();
}

export function propolis_intercept_subscribe(len: i32): u32 {
  const s = subscriptionRecord(len);
  if (s.qos > 1) packetSetInt(Field.QOS, 1);
  return next();
}

export function propolis_on_event(len: i32): void {
  const e = eventRecord(len);
  log(LogLevel.INFO, "as-sdk event " + eventName(e.event) + " client " + e.clientId);
}

export function propolis_tick(): void {
  log(LogLevel.DEBUG, "as-sdk tick");
}
