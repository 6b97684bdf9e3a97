// The schema registry scenario's Node side: @kafkajs/confluent-schema-registry given only the
// local registry endpoint's URL (no auth, no middleware) and kafkajs given only the proxy's
// address. It registers an Avro schema, produces `count` records encoded with it, consumes
// them and decodes each with a fresh registry client, then registers an incompatible schema
// and asks for a missing subject, and prints one line "RESULT {json}" with what it saw.
'use strict';

const { Kafka, logLevel } = require('kafkajs');
const { SchemaRegistry, SchemaType } = require('@kafkajs/confluent-schema-registry');
const registryVersion = require('@kafkajs/confluent-schema-registry/package.json').version;

const ORDER = JSON.stringify({
  type: 'record', name: 'Order', namespace: 'interop',
  fields: [{ name: 'id', type: 'long' }, { name: 'note', type: 'string' }],
});
const INCOMPATIBLE = JSON.stringify({
  type: 'record', name: 'Order', namespace: 'interop',
  fields: [{ name: 'id', type: 'long' }, { name: 'note', type: 'string' }, { name: 'qty', type: 'int' }],
});

function args() {
  const out = { count: 60 };
  for (const a of process.argv.slice(2)) {
    const i = a.indexOf('=');
    out[a.slice(0, i)] = a.slice(0, i) === 'count' ? Number(a.slice(i + 1)) : a.slice(i + 1);
  }
  return out;
}

async function main() {
  const o = args();
  const res = { client: '@kafkajs/confluent-schema-registry', client_version: registryVersion, ok: false,
    step: 'start', errors: [], schema_id: null, produced: 0, decoded: 0, bad: [], incompatible: null, missing: null };
  const kafka = new Kafka({ clientId: 'interop-registry-kafkajs', brokers: [o.bootstrap], logLevel: logLevel.WARN,
    retry: { retries: 15, initialRetryTime: 300, maxRetryTime: 3000 } });
  const producer = kafka.producer();
  const consumer = kafka.consumer({ groupId: o.group, sessionTimeout: 30000, heartbeatInterval: 3000 });
  try {
    res.step = 'register';
    const registry = new SchemaRegistry({ host: o.url });
    const subject = `${o.topic}-value`;
    const { id } = await registry.register({ type: SchemaType.AVRO, schema: ORDER }, { subject });
    res.schema_id = id;

    res.step = 'produce';
    await producer.connect();
    const messages = [];
    for (let i = 0; i < o.count; i++) {
      messages.push({ key: `k-${i}`, value: await registry.encode(id, { id: i, note: `n-${i}` }) });
    }
    await producer.send({ topic: o.topic, acks: -1, messages });
    res.produced = o.count;

    res.step = 'consume';
    const fresh = new SchemaRegistry({ host: o.url });
    await consumer.connect();
    await consumer.subscribe({ topic: o.topic, fromBeginning: true });
    const seen = new Set();
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`decoded ${seen.size} of ${o.count} in 90 s`)), 90000);
      consumer.run({
        eachMessage: async ({ message }) => {
          const value = await fresh.decode(message.value);
          if (value.note !== `n-${value.id}`) res.bad.push(JSON.stringify(value));
          seen.add(Number(value.id));
          if (seen.size >= o.count) { clearTimeout(timer); resolve(); }
        },
      }).catch(reject);
    });
    res.decoded = seen.size;

    res.step = 'incompatible';
    try {
      await registry.register({ type: SchemaType.AVRO, schema: INCOMPATIBLE }, { subject });
      res.incompatible = { status: 200 };
    } catch (e) {
      res.incompatible = { status: e.status, message: e.message };
    }
    res.step = 'missing';
    try {
      await registry.getLatestSchemaId('no-such-subject');
      res.missing = { status: 200 };
    } catch (e) {
      res.missing = { status: e.status, message: e.message };
    }
    res.step = 'done';
    res.ok = true;
  } catch (e) {
    res.errors.push(`${res.step}: ${e && e.message ? e.message : e}`);
  } finally {
    await consumer.disconnect().catch(() => {});
    await producer.disconnect().catch(() => {});
  }
  process.stdout.write(`RESULT ${JSON.stringify(res)}\n`);
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
