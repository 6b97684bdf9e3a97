// The client matrix's kafkajs row. kafkajs is configured with nothing but `brokers` (its
// bootstrap.servers): the proxy's address. Record i has key "k-i", value "<topic>-i" and goes
// to partition i % partitions; the program produces (acks=all, idempotent), reads the broker
// list (describeCluster), consumes in a consumer group checking every record (key, value,
// partition, per-partition order, consecutive offsets), commits, reads the committed offsets
// back, and prints one line "RESULT {json}". kafkajs's own log goes to stderr, which the
// harness scans for broker addresses that should never reach a client.
'use strict';

const { Kafka, logLevel } = require('kafkajs');
const kafkajsVersion = require('kafkajs/package.json').version;

function args() {
  const out = { count: 300, partitions: 3, mode: 'roundtrip', soakSecs: 40, intervalMs: 100, timeoutSecs: 90 };
  for (const a of process.argv.slice(2)) {
    const i = a.indexOf('=');
    if (i < 0) throw new Error(`argument ${a}: want name=value`);
    const [k, v] = [a.slice(0, i), a.slice(i + 1)];
    out[k] = ['count', 'partitions', 'soakSecs', 'intervalMs', 'timeoutSecs'].includes(k) ? Number(v) : v;
  }
  for (const k of ['bootstrap', 'topic', 'group']) {
    if (!out[k]) throw new Error(`missing ${k}=...: usage node matrix.js bootstrap=HOST:PORT topic=T group=G [mode=roundtrip|soak]`);
  }
  return out;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const o = args();
  const res = {
    client: 'kafkajs', client_version: kafkajsVersion, ok: false, step: 'start', errors: [], bad: [],
    metadata_nodes: {}, produced: 0, acked: 0, send_failed: 0, consumed: 0, redelivered: 0,
    mismatched: 0, missing: 0, end_offsets: {}, committed_read_back: {},
    // When each client disconnected (Unix seconds, from the call to its return): the harness
    // excuses a client disconnect in the proxy's log only inside these windows (and the exit).
    closed: [],
  };
  const closing = async (client, close) => {
    const from = Date.now() / 1000;
    try { await close(); } finally { res.closed.push({ client, from, to: Date.now() / 1000 }); }
  };
  const fail = (step, err) => { res.step = step; res.errors.push(`${step}: ${err && err.message ? err.message : err}`); };
  const bad = (text) => { if (res.bad.length < 10) res.bad.push(text); };
  const logCreator = () => ({ namespace, level, log }) => {
    const { message, ...extra } = log;
    process.stderr.write(`${new Date().toISOString()} [kafkajs] ${namespace} ${level}: ${message} ${JSON.stringify(extra)}\n`);
  };
  // Only the bootstrap address: no ssl, no sasl. The soak (a node is stopped meanwhile) logs at
  // DEBUG: kafkajs then logs every response it parsed, Metadata's partitions and leaders too.
  const level = o.mode === 'soak' ? logLevel.DEBUG : logLevel.INFO;
  const kafka = new Kafka({ clientId: 'interop-matrix-kafkajs', brokers: [o.bootstrap], logLevel: level, logCreator,
    retry: { retries: 15, initialRetryTime: 300, maxRetryTime: 3000 } });
  const admin = kafka.admin();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  const consumer = kafka.consumer({ groupId: o.group, sessionTimeout: 30000, heartbeatInterval: 3000 });
  try {
    res.step = 'describeCluster';
    await admin.connect();
    const cluster = await admin.describeCluster();
    for (const b of cluster.brokers) res.metadata_nodes[String(b.nodeId)] = `${b.host}:${b.port}`;

    res.step = 'produce';
    await producer.connect();
    const acked = [];
    const send = async (first, n) => {
      const messages = [];
      for (let i = first; i < first + n; i++) messages.push({ key: `k-${i}`, value: `${o.topic}-${i}`, partition: i % o.partitions });
      try {
        await producer.send({ topic: o.topic, acks: -1, messages });
        for (let j = 0; j < n; j++) acked.push(true);
        res.acked += n;
      } catch (e) {
        for (let j = 0; j < n; j++) acked.push(false);
        res.send_failed += n;
        if (res.errors.length < 5) fail(`produce records ${first}..${first + n - 1}`, e);
      }
      res.produced += n;
    };
    const t0 = Date.now();
    if (o.mode === 'soak') {
      for (let i = 0; Date.now() - t0 < o.soakSecs * 1000; i++) { await send(i, 1); await sleep(o.intervalMs); }
    } else {
      for (let i = 0; i < o.count; i += 100) await send(i, Math.min(100, o.count - i));
    }
    res.produce_secs = (Date.now() - t0) / 1000;
    await closing('producer', () => producer.disconnect());

    res.step = 'consume';
    const want = {}; const next = {}; const lastOff = {};
    for (let p = 0; p < o.partitions; p++) { want[p] = 0; next[p] = p; }
    acked.forEach((ok, i) => { if (ok) want[i % o.partitions]++; });
    const done = () => Object.keys(want).every((p) => (next[p] - p) / o.partitions >= want[p]);
    let finish;
    const finished = new Promise((r) => { finish = r; });
    await consumer.connect();
    await consumer.subscribe({ topic: o.topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition: p, message: m }) => {
        const k = m.key ? m.key.toString() : '';
        const v = m.value ? m.value.toString() : null;
        const off = Number(m.offset);
        const i = Number(k.slice(2));
        if (!k.startsWith('k-') || !Number.isInteger(i)) { res.mismatched++; bad(`partition ${p} offset ${off}: unexpected key ${k}`); return; }
        if (v !== `${o.topic}-${i}` || i % o.partitions !== p) { res.mismatched++; bad(`record ${i}: key=${k} value=${v} partition=${p}`); return; }
        if (i < next[p]) { res.redelivered++; return; }
        if (i !== next[p]) { res.missing += (i - next[p]) / o.partitions; bad(`partition ${p}: record ${i} at offset ${off}, want record ${next[p]}`); }
        if (p in lastOff && off !== lastOff[p] + 1) bad(`partition ${p}: record ${i} at offset ${off} after offset ${lastOff[p]}`);
        lastOff[p] = off; next[p] = i + o.partitions; res.consumed++;
        if (done()) finish(true);
      },
    });
    const timer = setTimeout(() => finish(false), o.timeoutSecs * 1000);
    const complete = done() || await finished;
    clearTimeout(timer);
    if (!complete) fail('consume', `deadline: ${res.consumed} of ${res.acked} acknowledged records consumed`);
    res.step = 'commit';
    const commits = Object.entries(lastOff).map(([p, off]) => ({ topic: o.topic, partition: Number(p), offset: String(off + 1) }));
    for (const c of commits) res.end_offsets[String(c.partition)] = Number(c.offset);
    await consumer.commitOffsets(commits);
    await closing('consumer', () => consumer.disconnect());

    res.step = 'read committed offsets';
    const offs = await admin.fetchOffsets({ groupId: o.group, topics: [o.topic] });
    for (const t of offs) for (const p of t.partitions) if (Number(p.offset) >= 0) res.committed_read_back[String(p.partition)] = Number(p.offset);
    await closing('admin', () => admin.disconnect());
    if (!res.errors.length) { res.ok = true; res.step = 'done'; }
  } catch (e) {
    fail(res.step, e);
  }
  process.stdout.write(`RESULT ${JSON.stringify(res)}\n`);
  process.exit(res.ok ? 0 : 1);
}

main();
