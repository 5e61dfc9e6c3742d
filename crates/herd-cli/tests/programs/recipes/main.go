// The Go recipe (docs/recipes.md): net/http on the socket herd passes
// (fd 3), stopping without dropping a keep-alive request. Server.Shutdown
// closes idle keep-alive connections at once; this stops accepting,
// answers with `Connection: close` for a linger, then shuts down.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

const linger = time.Second

func main() {
	ln, err := net.FileListener(os.NewFile(3, "herd"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "no socket at fd 3:", err)
		os.Exit(78)
	}
	var stopping atomic.Bool
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stopping.Load() {
			w.Header().Set("Connection", "close")
		}
		if r.URL.Path == "/pid" {
			fmt.Fprintf(w, "%d", os.Getpid())
		} else {
			fmt.Fprintf(w, "hello from %d\n", os.Getpid())
		}
	})}
	done := make(chan struct{})
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		stopping.Store(true)
		ln.Close() // stop accepting; open connections are still served
		time.Sleep(linger)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		close(done)
	}()
	if err := srv.Serve(ln); !stopping.Load() {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	<-done
}
