package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/audit-shipper/audit-shipper/demo"
)

// demoCmd writes a live, rotating audit log and ships it with the embedded
// default to a file, then says how much arrived.
func demoCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "working directory (default: a new temporary directory)")
	events := fs.Int("events", 200000, "events to write")
	rate := fs.Int("rate", 20000, "events per second to write (0: as fast as possible)")
	listen := fs.String("listen", ":9464", "metrics listener (/metrics, /healthz, /readyz); empty disables it")
	logLevel := fs.String("log-level", "info", "the shipper's log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "audit-shipper-demo-")
		if err != nil {
			fmt.Fprintln(stderr, "audit-shipper demo:", err)
			return exitFailed
		}
		*dir = d
	}
	cfg, err := demo.Config(*dir, *listen, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "audit-shipper demo:", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "demo: writing %d events to %s, shipping them to %s\n", *events, cfg.Source.Path, demo.ShippedPath(*dir))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	shipCtx, stopShip := context.WithCancel(ctx)
	defer stopShip()
	start := time.Now()
	writeErr := make(chan error, 1)
	go func() { writeErr <- demo.Write(ctx, *dir, *events, *rate) }()
	shipped := make(chan int, 1)
	go func() { shipped <- ship(shipCtx, cfg, stderr) }()

	if err := <-writeErr; err != nil {
		fmt.Fprintln(stderr, "audit-shipper demo:", err)
		stopShip()
		<-shipped
		return exitFailed
	}
	// Wait until every event has arrived (or the user stops the demo).
	var unique, dups int
	for {
		var err error
		unique, dups, err = demo.Count(demo.ShippedPath(*dir))
		if err != nil {
			fmt.Fprintln(stderr, "audit-shipper demo:", err)
		}
		if unique >= *events || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	elapsed := time.Since(start)
	stopShip()
	code := <-shipped
	fmt.Fprintf(stdout, "demo: written %d, delivered %d, duplicates %d, lost %d in %s\n",
		*events, unique, dups, *events-unique, elapsed.Round(time.Millisecond))
	return code
}
