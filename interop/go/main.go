// Command matrix-go is the client matrix's Go side: one program, three Kafka clients
// (IBM/sarama, twmb/franz-go, segmentio/kafka-go), each configured with nothing but the
// proxy's address as its bootstrap server.
//
// Record i has key "k-i", value "<topic>-i" and goes to partition i % partitions, so every
// partition's order is known. The program produces (acks=all), then consumes in a consumer
// group, checks every record (key, value, partition, per-partition order, consecutive
// offsets), commits, reads the committed offsets back, and prints one line
// "RESULT {json}" for the harness. Everything the client logs goes to stderr, which the
// harness scans for broker addresses that should never reach a client.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// options are the harness's flags; the clients get only bootstrap as configuration.
type options struct {
	client     string
	bootstrap  string
	topic      string
	group      string
	count      int
	partitions int
	// mode "roundtrip" produces count records in batches; "soak" produces one record at a
	// time every interval for soakSecs (a broker is stopped and restarted meanwhile).
	mode     string
	soak     time.Duration
	interval time.Duration
	timeout  time.Duration
}

// result is what the harness asserts on; field names match the Java programs'.
type result struct {
	Client         string            `json:"client"`
	ClientVersion  string            `json:"client_version"`
	OK             bool              `json:"ok"`
	Step           string            `json:"step"`
	Errors         []string          `json:"errors"`
	MetadataNodes  map[string]string `json:"metadata_nodes"`
	Produced       int               `json:"produced"`
	Acked          int               `json:"acked"`
	SendFailed     int               `json:"send_failed"`
	Consumed       int               `json:"consumed"`
	Redelivered    int               `json:"redelivered"`
	Mismatched     int               `json:"mismatched"`
	Missing        int               `json:"missing"`
	Bad            []string          `json:"bad"`
	EndOffsets     map[string]int64  `json:"end_offsets"`
	CommittedBack  map[string]int64  `json:"committed_read_back"`
	ProduceSeconds float64           `json:"produce_secs"`
	// Closed: when each of the program's clients closed; the harness excuses a client's
	// disconnect in the proxy's log only inside these windows (and the program's exit).
	Closed []closed `json:"closed"`
	// many: the records its schedule offered, and how the schedule went.
	Offered int        `json:"offered,omitempty"`
	Many    *manyStats `json:"many,omitempty"`
	// registry: the schema registry client's refused calls, by what was asked.
	Registry map[string]*registryAnswer `json:"registry,omitempty"`
}

// closed is one client's Close, from its call to its return (Unix seconds).
type closed struct {
	Client string  `json:"client"`
	From   float64 `json:"from"`
	To     float64 `json:"to"`
}

func unixSecs(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// closing runs one client's close and records when it ran.
func (r *result) closing(client string, close func() error) error {
	from := time.Now()
	err := close()
	r.Closed = append(r.Closed, closed{Client: client, From: unixSecs(from), To: unixSecs(time.Now())})
	return err
}

// closingNoErr is closing for a Close that returns nothing.
func (r *result) closingNoErr(client string, close func()) {
	_ = r.closing(client, func() error { close(); return nil })
}

func (r *result) fail(step string, err error) {
	r.Step = step
	r.Errors = append(r.Errors, fmt.Sprintf("%s: %v", step, err))
}

func (r *result) badf(format string, args ...any) {
	if len(r.Bad) < 10 {
		r.Bad = append(r.Bad, fmt.Sprintf(format, args...))
	}
}

// checker follows each partition's expected sequence: partition p delivers p, p+P, p+2P...
type checker struct {
	o       *options
	res     *result
	next    map[int]int
	lastOff map[int]int64
	want    map[int]int // records acknowledged per partition
}

func newChecker(o *options, res *result, acked []bool) *checker {
	c := &checker{o: o, res: res, next: map[int]int{}, lastOff: map[int]int64{}, want: map[int]int{}}
	for p := 0; p < o.partitions; p++ {
		c.next[p] = p
	}
	for i, ok := range acked {
		if ok {
			c.want[i%o.partitions]++
		}
	}
	return c
}

// see checks one consumed record; it returns false for a record that is not ours.
func (c *checker) see(key, value []byte, partition int, offset int64) {
	k := string(key)
	i, err := strconv.Atoi(strings.TrimPrefix(k, "k-"))
	if err != nil || !strings.HasPrefix(k, "k-") {
		c.res.Mismatched++
		c.res.badf("partition %d offset %d: unexpected key %q", partition, offset, k)
		return
	}
	if string(value) != fmt.Sprintf("%s-%d", c.o.topic, i) || i%c.o.partitions != partition {
		c.res.Mismatched++
		c.res.badf("record %d: key=%s value=%q partition=%d", i, k, value, partition)
		return
	}
	if i < c.next[partition] {
		// Seen before: a retried produce the broker stored twice (a producer without
		// idempotence), or a re-read after a group rebalance. Counted, not an error; the
		// offset moves on so the consecutive-offset check stays meaningful.
		c.res.Redelivered++
		c.lastOff[partition] = offset
		return
	}
	if i != c.next[partition] {
		c.res.Missing += (i - c.next[partition]) / c.o.partitions
		c.res.badf("partition %d: record %d at offset %d, want record %d", partition, i, offset, c.next[partition])
	}
	if last, ok := c.lastOff[partition]; ok && offset != last+1 {
		c.res.badf("partition %d: record %d at offset %d after offset %d", partition, i, offset, last)
	}
	c.lastOff[partition] = offset
	c.next[partition] = i + c.o.partitions
	c.res.Consumed++
}

// done: every partition delivered as many distinct records as were acknowledged to it.
func (c *checker) done() bool {
	for p := 0; p < c.o.partitions; p++ {
		if (c.next[p]-p)/c.o.partitions < c.want[p] {
			return false
		}
	}
	return true
}

func (c *checker) nextOffsets() map[string]int64 {
	out := map[string]int64{}
	for p, off := range c.lastOff {
		out[strconv.Itoa(p)] = off + 1
	}
	return out
}

func key(i int) []byte               { return []byte(fmt.Sprintf("k-%d", i)) }
func value(o *options, i int) []byte { return []byte(fmt.Sprintf("%s-%d", o.topic, i)) }

// moduleVersion is the version of a dependency as built into this binary.
func moduleVersion(path string) string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, m := range info.Deps {
			if m.Path == path {
				return m.Version
			}
		}
	}
	return "unknown"
}

func main() {
	o := &options{}
	flag.StringVar(&o.client, "client", "", "sarama | franz-go | kafka-go | many | franz-sr")
	flag.StringVar(&o.bootstrap, "bootstrap", "", "the proxy's address (bootstrap.servers)")
	flag.StringVar(&o.topic, "topic", "", "topic (records are checked against its name)")
	flag.StringVar(&o.group, "group", "", "consumer group id")
	flag.IntVar(&o.count, "count", 300, "records to produce in roundtrip mode")
	flag.IntVar(&o.partitions, "partitions", 3, "the topic's partitions")
	flag.StringVar(&o.mode, "mode", "roundtrip", "roundtrip | soak")
	soakSecs := flag.Int("soak-secs", 40, "soak mode: how long to produce")
	intervalMs := flag.Int("interval-ms", 100, "soak mode: time between records")
	timeoutSecs := flag.Int("timeout-secs", 90, "deadline of the consume phase")
	conns := flag.Int("conns", 200, "many: concurrent producer connections")
	valueBytes := flag.Int("value-bytes", 1000, "many: bytes per record value")
	slowMs := flag.Int("slow-ms", 2, "many: the consumer's pause after each record while producers run")
	registryURL := flag.String("registry", "", "franz-sr: the schema registry endpoint's URL")
	flag.Parse()
	o.soak = time.Duration(*soakSecs) * time.Second
	o.interval = time.Duration(*intervalMs) * time.Millisecond
	o.timeout = time.Duration(*timeoutSecs) * time.Second
	if o.bootstrap == "" || o.topic == "" || o.group == "" {
		fmt.Fprintln(os.Stderr, "usage: matrix-go -client NAME -bootstrap HOST:PORT -topic T -group G [-mode roundtrip|soak]")
		os.Exit(2)
	}
	res := &result{Client: o.client, Errors: []string{}, Bad: []string{}, Closed: []closed{}}
	switch o.client {
	case "sarama":
		res.ClientVersion = moduleVersion("github.com/IBM/sarama")
		runSarama(o, res)
	case "franz-go":
		res.ClientVersion = moduleVersion("github.com/twmb/franz-go")
		runFranz(o, res)
	case "kafka-go":
		res.ClientVersion = moduleVersion("github.com/segmentio/kafka-go")
		runKafkaGo(o, res)
	case "many":
		res.ClientVersion = moduleVersion("github.com/segmentio/kafka-go")
		runMany(o, res, *conns, *valueBytes, *slowMs)
	case "franz-sr":
		res.ClientVersion = moduleVersion("github.com/twmb/franz-go/pkg/sr")
		runRegistry(o, res, *registryURL)
	default:
		fmt.Fprintf(os.Stderr, "unknown -client %q: want sarama, franz-go or kafka-go\n", o.client)
		os.Exit(2)
	}
	res.OK = len(res.Errors) == 0
	if res.OK {
		res.Step = "done"
	}
	line, _ := json.Marshal(res)
	fmt.Printf("RESULT %s\n", line)
	if !res.OK {
		os.Exit(1)
	}
}

// produceAll drives one client's send function: in batches (roundtrip) or one record at a
// time for the soak's duration. send returns, per record of the batch, whether it was acked.
func produceAll(o *options, res *result, send func(first, n int) []error) []bool {
	var acked []bool
	start := time.Now()
	record := func(errs []error) {
		for _, err := range errs {
			res.Produced++
			if err == nil {
				res.Acked++
				acked = append(acked, true)
			} else {
				res.SendFailed++
				acked = append(acked, false)
				if res.SendFailed <= 5 {
					res.Errors = append(res.Errors, fmt.Sprintf("produce record %d: %v", len(acked)-1, err))
				}
			}
		}
	}
	if o.mode == "soak" {
		for i := 0; time.Since(start) < o.soak; i++ {
			record(send(i, 1))
			time.Sleep(o.interval)
		}
	} else {
		for i := 0; i < o.count; i += 100 {
			n := min(100, o.count-i)
			record(send(i, n))
		}
	}
	res.ProduceSeconds = time.Since(start).Seconds()
	return acked
}
