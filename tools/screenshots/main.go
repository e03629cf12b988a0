// Command screenshots takes the README's Web UI screenshots in a real
// browser: Debian's chromium, driven over its remote debugging port with
// chromedp. The history page of a running workflow keeps a long poll open,
// so a one-shot headless screenshot never finishes; this waits in real time
// until the page shows the text asked for, lets it settle, and captures it.
//
//	go run . --out ../../docs/webui 'list=http://localhost:8233/namespaces/default/workflows|Supervise'
//
// Each shot is NAME=URL[|TEXT]: the PNG is OUT/NAME.png, taken once the page
// contains TEXT. It is a separate module so that chromedp is not a
// dependency of Vigil itself.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "screenshots: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	browser := flag.String("chromium", "chromium", "the browser binary")
	out := flag.String("out", ".", "directory for the PNGs")
	width := flag.Int("width", 1600, "window width")
	height := flag.Int("height", 1000, "window height")
	settle := flag.Duration("settle", 3*time.Second, "time to let a page finish rendering after its text appeared")
	limit := flag.Duration("timeout", 60*time.Second, "give up on a page after this long")
	flag.Parse()
	if flag.NArg() == 0 {
		return fmt.Errorf("give at least one NAME=URL[|TEXT]")
	}
	profile, err := os.MkdirTemp("", "screenshots-chromium")
	if err != nil {
		return err
	}
	defer os.RemoveAll(profile)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(*browser),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(*width, *height),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first action on a context starts the browser and ties it to that
	// context: start it here, not under one page's timeout.
	if err := chromedp.Do(bctx); err != nil {
		return fmt.Errorf("start %s: %w", *browser, err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, arg := range flag.Args() {
		name, rest, ok := strings.Cut(arg, "=")
		if !ok {
			return fmt.Errorf("%q: want NAME=URL[|TEXT]", arg)
		}
		url, text, _ := strings.Cut(rest, "|")
		path := filepath.Join(*out, name+".png")
		if err := shoot(bctx, url, text, path, *settle, *limit); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Println(path)
	}
	return nil
}

// shoot opens url, waits until the page contains text, and saves a PNG.
func shoot(ctx context.Context, url, text, path string, settle, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	err := chromedp.Do(ctx,
		chromedp.Navigate(url),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			for {
				body, err := chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`)(ctx, t)
				if err != nil {
					return err
				}
				if text == "" || strings.Contains(body, text) {
					return nil
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("the page never showed %q", text)
				case <-time.After(500 * time.Millisecond):
				}
			}
		}),
		chromedp.Sleep(settle),
	)
	if err != nil {
		return err
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		return err
	}
	return os.WriteFile(path, png, 0o644)
}
