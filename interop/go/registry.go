package main

// The schema registry scenario's Go side: franz-go's schema registry client (pkg/sr) given
// only the local registry endpoint's URL, hamba/avro for the records, franz-go for Kafka
// given only the proxy's address. It registers an Avro schema, produces count records in
// Confluent's wire format, consumes them and decodes each with the schema fetched by id by a
// fresh registry client, then registers an incompatible schema and asks for a missing
// subject, and records the registry's answers (HTTP status and Confluent error code).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
)

const orderSchema = `{"type":"record","name":"Order","namespace":"interop","fields":[{"name":"id","type":"long"},{"name":"note","type":"string"}]}`
const incompatibleSchema = `{"type":"record","name":"Order","namespace":"interop","fields":[{"name":"id","type":"long"},{"name":"note","type":"string"},{"name":"qty","type":"int"}]}`

type order struct {
	ID   int64  `avro:"id"`
	Note string `avro:"note"`
}

// registryAnswer is what a refused registry call came back with.
type registryAnswer struct {
	Status    int    `json:"status"`
	ErrorCode int    `json:"error_code"`
	Message   string `json:"message"`
}

func answerOf(err error) *registryAnswer {
	var re *sr.ResponseError
	if errors.As(err, &re) {
		return &registryAnswer{Status: re.StatusCode, ErrorCode: re.ErrorCode, Message: re.Message}
	}
	if err == nil {
		return &registryAnswer{Status: 200}
	}
	return &registryAnswer{Message: err.Error()}
}

func runRegistry(o *options, res *result, url string) {
	ctx := context.Background()
	rcl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		res.fail("registry client", err)
		return
	}
	subject := o.topic + "-value"
	created, err := rcl.CreateSchema(ctx, subject, sr.Schema{Schema: orderSchema, Type: sr.TypeAvro})
	if err != nil {
		res.fail("register", err)
		return
	}
	schema, err := avro.Parse(orderSchema)
	if err != nil {
		res.fail("parse", err)
		return
	}
	var serde sr.Serde
	serde.Register(created.ID, order{}, sr.EncodeFn(func(v any) ([]byte, error) {
		return avro.Marshal(schema, v)
	}))

	cl, err := kgo.NewClient(kgo.SeedBrokers(o.bootstrap), kgo.DefaultProduceTopic(o.topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(60*time.Second), franzLogger())
	if err != nil {
		res.fail("connect", err)
		return
	}
	defer cl.Close()
	recs := make([]*kgo.Record, o.count)
	for i := range recs {
		value, err := serde.Encode(order{ID: int64(i), Note: fmt.Sprintf("n-%d", i)})
		if err != nil {
			res.fail("encode", err)
			return
		}
		recs[i] = &kgo.Record{Key: key(i), Value: value}
	}
	res.Produced = o.count
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		res.fail("produce", err)
		return
	}
	res.Acked = o.count

	// A fresh registry client: the consumer learns the schema by id through the endpoint.
	fresh, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		res.fail("registry client", err)
		return
	}
	schemas := map[int]avro.Schema{}
	cg, err := kgo.NewClient(kgo.SeedBrokers(o.bootstrap), kgo.ConsumerGroup(o.group),
		kgo.ConsumeTopics(o.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), franzLogger())
	if err != nil {
		res.fail("consumer group", err)
		return
	}
	defer cg.Close()
	seen := map[int64]bool{}
	cctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	for len(seen) < o.count && cctx.Err() == nil {
		cg.PollFetches(cctx).EachRecord(func(r *kgo.Record) {
			id, payload, err := serde.DecodeID(r.Value)
			if err != nil {
				res.badf("record %s: %v", r.Key, err)
				return
			}
			s, ok := schemas[id]
			if !ok {
				got, err := fresh.SchemaByID(ctx, id)
				if err != nil {
					res.badf("schema %d: %v", id, err)
					return
				}
				if s, err = avro.Parse(got.Schema); err != nil {
					res.badf("schema %d: %v", id, err)
					return
				}
				schemas[id] = s
			}
			var v order
			if err := avro.Unmarshal(s, payload, &v); err != nil || v.Note != fmt.Sprintf("n-%d", v.ID) {
				res.badf("record %s: %+v %v", r.Key, v, err)
				return
			}
			seen[v.ID] = true
		})
	}
	res.Consumed = len(seen)
	if len(seen) < o.count {
		res.fail("consume", fmt.Errorf("decoded %d of %d records", len(seen), o.count))
	}
	_, err = rcl.CreateSchema(ctx, subject, sr.Schema{Schema: incompatibleSchema, Type: sr.TypeAvro})
	res.Registry = map[string]*registryAnswer{"incompatible": answerOf(err)}
	_, err = rcl.SchemaByVersion(ctx, "no-such-subject", -1)
	res.Registry["missing"] = answerOf(err)
}
