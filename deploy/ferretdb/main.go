// Command ferretdb-vitalflow runs FerretDB 1.24 with its SQLite backend as a
// MongoDB-wire server for local development and tests.
//
// It wraps the public github.com/FerretDB/FerretDB/ferretdb package instead of
// building FerretDB's own cmd/ferretdb, whose `go install` build panics at
// start-up (missing generated version file, FerretDB issue 2982).
//
// SIGINT/SIGTERM stop it cleanly: the listener closes, open connections end,
// the SQLite databases are closed, and the process exits 0. A second signal, or
// a shutdown that takes longer than -shutdown-timeout, ends it at once.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dir := flag.String("dir", "data", "directory for the SQLite databases (created if missing)")
	level := flag.String("log-level", "warn", "log level: debug, info, warn or error")
	shutdownTimeout := flag.Duration("shutdown-timeout", 15*time.Second, "give up a clean stop after this long")
	flag.Parse()

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-vitalflow: bad -log-level %q: %v\n", *level, err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-vitalflow: %v\n", err)
		os.Exit(1)
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *addr},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + *dir + "/", // must end with a slash
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-vitalflow: %v\n", err)
		os.Exit(1)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		signal.Stop(sigs) // restore default handling: a second signal ends it at once
		fmt.Fprintf(os.Stderr, "ferretdb-vitalflow: %v received, stopping\n", s)
		time.AfterFunc(*shutdownTimeout, func() {
			fmt.Fprintln(os.Stderr, "ferretdb-vitalflow: clean stop timed out")
			os.Exit(1)
		})
		cancel()
	}()

	fmt.Fprintf(os.Stderr, "ferretdb-vitalflow: FerretDB 1.24 (sqlite) listening on %s, data in %s\n", *addr, *dir)
	if err := f.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-vitalflow: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "ferretdb-vitalflow: stopped")
}
