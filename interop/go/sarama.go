package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

func saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = "interop-matrix-sarama"
	// A version with idempotent produce and KIP-848-free classic groups; the proxy caps
	// the versions it forwards and sarama negotiates down from this.
	c.Version = sarama.V3_6_0_0
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Partitioner = sarama.NewManualPartitioner
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1
	c.Producer.Retry.Max = 30
	c.Producer.Retry.Backoff = 500 * time.Millisecond
	c.Metadata.Retry.Max = 30
	c.Metadata.Retry.Backoff = 500 * time.Millisecond
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.AutoCommit.Enable = false
	return c
}

func runSarama(o *options, res *result) {
	sarama.Logger = log.New(os.Stderr, "[sarama] ", log.LstdFlags|log.Lmicroseconds)
	// Only the bootstrap address: no TLS, no SASL.
	client, err := sarama.NewClient([]string{o.bootstrap}, saramaConfig())
	if err != nil {
		res.fail("connect", err)
		return
	}
	defer res.closing("sarama client", client.Close)
	if err := client.RefreshMetadata(o.topic); err != nil {
		res.fail("metadata", err)
		return
	}
	res.MetadataNodes = map[string]string{}
	for _, b := range client.Brokers() {
		res.MetadataNodes[strconv.Itoa(int(b.ID()))] = b.Addr()
	}

	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		res.fail("producer", err)
		return
	}
	acked := produceAll(o, res, func(first, n int) []error {
		msgs := make([]*sarama.ProducerMessage, n)
		for j := range msgs {
			i := first + j
			msgs[j] = &sarama.ProducerMessage{Topic: o.topic, Partition: int32(i % o.partitions),
				Key: sarama.ByteEncoder(key(i)), Value: sarama.ByteEncoder(value(o, i)), Metadata: j}
		}
		errs := make([]error, n)
		var perr sarama.ProducerErrors
		if err := producer.SendMessages(msgs); errors.As(err, &perr) {
			for _, e := range perr {
				errs[e.Msg.Metadata.(int)] = e.Err
			}
		} else if err != nil {
			for j := range errs {
				errs[j] = err
			}
		}
		return errs
	})
	if err := res.closing("sarama producer", producer.Close); err != nil {
		res.fail("producer close", err)
	}

	group, err := sarama.NewConsumerGroup([]string{o.bootstrap}, o.group, saramaConfig())
	if err != nil {
		res.fail("consumer group", err)
		return
	}
	h := &saramaHandler{check: newChecker(o, res, acked)}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	h.cancel = cancel
	go func() {
		for e := range group.Errors() {
			log.Printf("[sarama] consumer group error: %v", e)
		}
	}()
	for ctx.Err() == nil {
		if err := group.Consume(ctx, []string{o.topic}, h); err != nil && ctx.Err() == nil {
			res.fail("consume", err)
			break
		}
	}
	timedOut := !h.finished
	cancel()
	if err := res.closing("sarama consumer group", group.Close); err != nil {
		res.fail("consumer group close", err)
	}
	if timedOut {
		res.fail("consume", fmt.Errorf("deadline: %d of %d acknowledged records consumed", res.Consumed, res.Acked))
	}
	res.EndOffsets = h.check.nextOffsets()

	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		res.fail("admin", err)
		return
	}
	parts := make([]int32, o.partitions)
	for p := range parts {
		parts[p] = int32(p)
	}
	offs, err := admin.ListConsumerGroupOffsets(o.group, map[string][]int32{o.topic: parts})
	if err != nil {
		res.fail("read committed offsets", err)
		return
	}
	res.CommittedBack = map[string]int64{}
	for _, p := range parts {
		if b := offs.GetBlock(o.topic, p); b != nil && b.Offset >= 0 {
			res.CommittedBack[strconv.Itoa(int(p))] = b.Offset
		}
	}
}

// saramaHandler checks records as the group's claims deliver them (one goroutine per
// partition, hence the lock) and commits once every acknowledged record was seen.
type saramaHandler struct {
	mu       sync.Mutex
	check    *checker
	finished bool
	cancel   context.CancelFunc
}

func (h *saramaHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *saramaHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for msg := range claim.Messages() {
		h.mu.Lock()
		h.check.see(msg.Key, msg.Value, int(msg.Partition), msg.Offset)
		sess.MarkMessage(msg, "")
		done := h.check.done() && !h.finished
		if done {
			sess.Commit()
			h.finished = true
		}
		h.mu.Unlock()
		if done {
			h.cancel()
			return nil
		}
	}
	return nil
}
