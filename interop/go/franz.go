package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func franzLogger() kgo.Opt { return franzLoggerAt(kgo.LogLevelInfo) }

// franzLoggerAt: at LogLevelDebug franz-go also logs every partition whose leader a metadata
// refresh changed ("metadata refresh topic partition data changed; topic: T, partition: P,
// new_leader: N, ..., old_leader: V, ..."), which the leader-change scenario reads per partition.
func franzLoggerAt(level kgo.LogLevel) kgo.Opt {
	return kgo.WithLogger(kgo.BasicLogger(os.Stderr, level, func() string {
		return time.Now().Format("15:04:05.000") + " [franz-go] "
	}))
}

func runFranz(o *options, res *result) {
	// Only the bootstrap address: no TLS, no SASL. Idempotent, acks=all by default. The
	// producer of the soak (a node is stopped meanwhile) logs at DEBUG.
	level := kgo.LogLevelInfo
	if o.mode == "soak" {
		level = kgo.LogLevelDebug
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(o.bootstrap), kgo.DefaultProduceTopic(o.topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(60*time.Second), franzLoggerAt(level))
	if err != nil {
		res.fail("connect", err)
		return
	}
	defer res.closingNoErr("franz-go producer client", cl.Close)
	ctx := context.Background()
	md, err := kadm.NewClient(cl).Metadata(ctx, o.topic)
	if err != nil {
		res.fail("metadata", err)
		return
	}
	res.MetadataNodes = map[string]string{}
	for _, b := range md.Brokers {
		res.MetadataNodes[strconv.Itoa(int(b.NodeID))] = fmt.Sprintf("%s:%d", b.Host, b.Port)
	}

	acked := produceAll(o, res, func(first, n int) []error {
		recs := make([]*kgo.Record, n)
		index := map[*kgo.Record]int{}
		for j := range recs {
			i := first + j
			recs[j] = &kgo.Record{Key: key(i), Value: value(o, i), Partition: int32(i % o.partitions)}
			index[recs[j]] = j
		}
		errs := make([]error, n)
		for _, r := range cl.ProduceSync(ctx, recs...) {
			errs[index[r.Record]] = r.Err
		}
		return errs
	})

	cg, err := kgo.NewClient(kgo.SeedBrokers(o.bootstrap), kgo.ConsumerGroup(o.group),
		kgo.ConsumeTopics(o.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(), franzLogger())
	if err != nil {
		res.fail("consumer group", err)
		return
	}
	defer res.closingNoErr("franz-go group client", cg.Close)
	check := newChecker(o, res, acked)
	cctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	for !check.done() && cctx.Err() == nil {
		fetches := cg.PollFetches(cctx)
		fetches.EachError(func(t string, p int32, err error) {
			if cctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "[franz-go] fetch error %s[%d]: %v\n", t, p, err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			check.see(r.Key, r.Value, int(r.Partition), r.Offset)
		})
	}
	if !check.done() {
		res.fail("consume", fmt.Errorf("deadline: %d of %d acknowledged records consumed", res.Consumed, res.Acked))
	}
	res.EndOffsets = check.nextOffsets()
	if err := cg.CommitUncommittedOffsets(ctx); err != nil {
		res.fail("commit", err)
		return
	}
	offs, err := kadm.NewClient(cg).FetchOffsets(ctx, o.group)
	if err != nil {
		res.fail("read committed offsets", err)
		return
	}
	res.CommittedBack = map[string]int64{}
	for p := 0; p < o.partitions; p++ {
		if r, ok := offs.Lookup(o.topic, int32(p)); ok && r.Err == nil {
			res.CommittedBack[strconv.Itoa(p)] = r.At
		}
	}
}
