package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// keyPartition puts record "k-i" on partition i % partitions (the matrix's known layout).
type keyPartition struct{}

func (keyPartition) Balance(msg kafka.Message, partitions ...int) int {
	i, _ := strconv.Atoi(strings.TrimPrefix(string(msg.Key), "k-"))
	return partitions[i%len(partitions)]
}

func runKafkaGo(o *options, res *result) {
	logger := log.New(os.Stderr, "[kafka-go] ", log.LstdFlags|log.Lmicroseconds)
	ctx := context.Background()
	// Only the bootstrap address: no TLS, no SASL.
	client := &kafka.Client{Addr: kafka.TCP(o.bootstrap), Timeout: 20 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{o.topic}})
	if err != nil {
		res.fail("metadata", err)
		return
	}
	res.MetadataNodes = map[string]string{}
	for _, b := range md.Brokers {
		res.MetadataNodes[strconv.Itoa(b.ID)] = fmt.Sprintf("%s:%d", b.Host, b.Port)
	}

	w := &kafka.Writer{Addr: kafka.TCP(o.bootstrap), Topic: o.topic, Balancer: keyPartition{},
		RequiredAcks: kafka.RequireAll, MaxAttempts: 30, WriteBackoffMin: 200 * time.Millisecond,
		WriteBackoffMax: time.Second, BatchTimeout: 5 * time.Millisecond, BatchSize: 100,
		Logger: logger, ErrorLogger: logger}
	acked := produceAll(o, res, func(first, n int) []error {
		msgs := make([]kafka.Message, n)
		for j := range msgs {
			msgs[j] = kafka.Message{Key: key(first + j), Value: value(o, first+j)}
		}
		errs := make([]error, n)
		err := w.WriteMessages(ctx, msgs...)
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) {
			copy(errs, werrs)
		} else if err != nil {
			for j := range errs {
				errs[j] = err
			}
		}
		return errs
	})
	if err := res.closing("kafka-go writer", w.Close); err != nil {
		res.fail("writer close", err)
	}

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{o.bootstrap}, GroupID: o.group,
		Topic: o.topic, StartOffset: kafka.FirstOffset, MaxWait: 500 * time.Millisecond,
		Logger: logger, ErrorLogger: logger})
	check := newChecker(o, res, acked)
	last := map[int]kafka.Message{}
	cctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	for !check.done() {
		m, err := r.FetchMessage(cctx)
		if err != nil {
			res.fail("consume", fmt.Errorf("%w: %d of %d acknowledged records consumed", err, res.Consumed, res.Acked))
			break
		}
		check.see(m.Key, m.Value, m.Partition, m.Offset)
		last[m.Partition] = m
	}
	res.EndOffsets = check.nextOffsets()
	commit := make([]kafka.Message, 0, len(last))
	for _, m := range last {
		commit = append(commit, m)
	}
	if err := r.CommitMessages(ctx, commit...); err != nil {
		res.fail("commit", err)
	}
	if err := res.closing("kafka-go reader", r.Close); err != nil {
		res.fail("reader close", err)
	}

	parts := make([]int, o.partitions)
	for p := range parts {
		parts[p] = p
	}
	offs, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: o.group,
		Topics: map[string][]int{o.topic: parts}})
	if err != nil {
		res.fail("read committed offsets", err)
		return
	}
	res.CommittedBack = map[string]int64{}
	for _, p := range offs.Topics[o.topic] {
		if p.Error == nil && p.CommittedOffset >= 0 {
			res.CommittedBack[strconv.Itoa(p.Partition)] = p.CommittedOffset
		}
	}
}
