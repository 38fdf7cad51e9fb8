package report

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

// pageCheck is what checkScript reports about a rendered page.
type pageCheck struct {
	Rendered, Expected int
	Charts             []struct {
		ID    string
		Paths int
		Texts int
	}
	Empty    []string // charts replaced by a sentence (no data)
	Clipped  []string // text outside its container
	Overlaps []string // chart texts drawn over each other
	Overflow []string // boxes wider than the page (horizontal scrolling)
	URLs     []string // attributes pointing outside the file
}

// checkScript measures the page as a person sees it: every text box
// against the box that holds it (HTML text against its parent element, SVG
// chart text against its chart), chart texts against each other, every
// box against the page width, and the links the page carries.
const checkScript = `((allowScroll) => {
  const out = {Charts: [], Empty: [], Clipped: [], Overlaps: [], Overflow: [], URLs: []};
  const st = document.getElementById('render-status');
  out.Rendered = +(st.getAttribute('data-rendered') || -1);
  out.Expected = +(st.getAttribute('data-expected') || -1);
  const visible = r => r.width > 0 && r.height > 0;
  const inside = (r, c) => r.left >= c.left - 1 && r.right <= c.right + 1 && r.top >= c.top - 1 && r.bottom <= c.bottom + 1;
  const label = (n, r) => (n.textContent || '').trim().slice(0, 60) + ' @' + Math.round(r.left) + ',' + Math.round(r.top);
  // HTML text nodes against their parent element (and open <details> only).
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const p = n.parentElement;
    if (!n.textContent.trim() || !p || p.closest('script,style,svg,.chart,[hidden],select,option')) continue;
    if (p.closest('details:not([open])') && !p.closest('summary')) continue;
    const range = document.createRange();
    range.selectNodeContents(n);
    const r = range.getBoundingClientRect();
    if (!visible(r)) continue;
    if (!inside(r, p.getBoundingClientRect())) out.Clipped.push(p.tagName + ': ' + label(n, r));
  }
  // Page width: nothing wider than the body's column.
  const body = document.body.getBoundingClientRect();
  for (const e of document.body.querySelectorAll('*')) {
    if (e.closest('script,style,.chart')) continue;
    // A wide table may scroll sideways on a narrow screen, never on a desktop.
    if (allowScroll && e.closest('.scroll')) continue;
    const r = e.getBoundingClientRect();
    if (visible(r) && (r.right > body.right + 1 || e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible'))
      out.Overflow.push(e.tagName + '.' + e.className + ' ' + Math.round(r.width) + 'px/' + e.scrollWidth);
  }
  for (const c of document.querySelectorAll('.chart-empty')) out.Empty.push(c.id);
  for (const c of document.querySelectorAll('.chart')) {
    const svg = c.querySelector('svg');
    const ch = {ID: c.id, Paths: svg ? svg.querySelectorAll('path,rect').length : 0, Texts: 0};
    out.Charts.push(ch);
    if (!svg) continue;
    const box = svg.getBoundingClientRect();
    const texts = [];
    for (const t of svg.querySelectorAll('text')) {
      const r = t.getBoundingClientRect();
      if (!visible(r) || !t.textContent.trim()) continue;
      ch.Texts++;
      if (!inside(r, box)) out.Clipped.push(c.id + ' svg: ' + label(t, r));
      texts.push([t, r]);
    }
    for (let i = 0; i < texts.length; i++) for (let j = i + 1; j < texts.length; j++) {
      const a = texts[i][1], b = texts[j][1];
      const w = Math.min(a.right, b.right) - Math.max(a.left, b.left), h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      if (w > 2 && h > 2) out.Overlaps.push(c.id + ': "' + texts[i][0].textContent + '" / "' + texts[j][0].textContent + '"');
    }
  }
  for (const e of document.querySelectorAll('[src],[href]')) {
    const u = e.getAttribute('src') || e.getAttribute('href');
    if (!/^(#|data:)/.test(u)) out.URLs.push(e.tagName + ' ' + u);
  }
  return JSON.stringify(out);
})`

// browser runs Debian's chromium headless through the DevTools protocol.
type browser struct {
	ctx    context.Context
	cancel func()
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	bin := "/usr/bin/chromium"
	_, err := os.Stat(bin)
	testenv.Require(t, err == nil, "needs Debian chromium (scripts/install-deps.sh)")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{ctx: ctx, cancel: func() { cancel(); acancel() }}
	t.Cleanup(b.cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return b
}

// load opens page at the given width in a new tab, waits until the charts
// report that they are drawn, and returns the page's measurements with
// every network request and script error seen.
func (b *browser) load(t *testing.T, page string, width int64, shot string) (pc pageCheck, requests, errs []string) {
	t.Helper()
	var mu sync.Mutex
	listen := func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			requests = append(requests, e.Request.URL)
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			errs = append(errs, fmt.Sprintf("script error at %d:%d: %s", d.LineNumber+1, d.ColumnNumber+1, msg))
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, strings.TrimSpace(string(a.Value)+" "+a.Description))
				}
				errs = append(errs, "console "+string(e.Type)+": "+strings.Join(parts, " "))
			}
		}
	}
	tab, cancel := chromedp.NewContext(b.ctx, chromedp.WithListener(listen))
	defer cancel()
	ctx, tcancel := context.WithTimeout(tab, 2*time.Minute)
	defer tcancel()
	fail := func(step string, err error) {
		t.Fatalf("%s at %d px: %s: %v (errors %v)", page, width, step, err, errs)
	}
	if err := chromedp.Do(tab); err != nil {
		fail("opening a tab", err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		fail("network tracking", err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 900), chromedp.Navigate("file://"+page)); err != nil {
		fail("loading", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const s = document.getElementById('render-status');
		return document.documentElement.hasAttribute('data-js-error') ||
		  (s !== null && s.hasAttribute('data-rendered') && s.getAttribute('data-rendered') === s.getAttribute('data-expected')); })()`,
		chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		fail("waiting for the charts", err)
	}
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf("%s(%v)", checkScript, width < 1000)))
	if err != nil {
		fail("measuring", err)
	}
	if err := json.Unmarshal([]byte(raw), &pc); err != nil {
		t.Fatalf("page check result: %v", err)
	}
	if shot != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			fail("screenshot", err)
		}
		if err := os.WriteFile(shot+".png", png, 0o644); err != nil {
			t.Fatal(err)
		}
		// And one screen per part of the page, as a person scrolls it.
		for _, id := range []string{"", "layers", "waterfall", "lanes", "cdf", "hist", "time", "deltas"} {
			found, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const e = document.getElementById('`+id+`');
				if ('`+id+`' === '') { window.scrollTo(0, 0); return true; }
				if (!e) return false; e.scrollIntoView(); window.scrollBy(0, -60); return true; })()`))
			if err != nil || !found {
				continue
			}
			png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
			if err != nil {
				fail("screenshot", err)
			}
			if err := os.WriteFile(fmt.Sprintf("%s-%s.png", shot, cmp.Or(id, "top")), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return pc, append([]string(nil), requests...), append([]string(nil), errs...)
}

// screenshotPath is where a page's screenshot goes: under
// $PINGPATH_SCREENSHOTS when set (outside the repository), else nowhere.
func screenshotPath(name string, width int64) string {
	dir := os.Getenv("PINGPATH_SCREENSHOTS")
	if dir == "" {
		return ""
	}
	_ = os.MkdirAll(dir, 0o755)
	return filepath.Join(dir, fmt.Sprintf("%s-%d", name, width))
}

// checkInBrowser loads a page at a desktop and a narrow width and fails on
// a script error, a request for anything but the file itself, a link out of
// it, a chart not drawn, or clipped or overlapping text.
func checkInBrowser(t *testing.T, b *browser, name, page string, wantEmpty []string) {
	t.Helper()
	for _, width := range []int64{1280, 760} {
		pc, requests, errs := b.load(t, page, width, screenshotPath(name, width))
		where := fmt.Sprintf("%s at %d px", name, width)
		for _, e := range errs {
			t.Errorf("%s: %s", where, e)
		}
		for _, u := range requests {
			if u != "file://"+page && !strings.HasPrefix(u, "data:") {
				t.Errorf("%s: requested %s (the page must be self-contained)", where, u)
			}
		}
		for _, u := range pc.URLs {
			t.Errorf("%s: links out: %s", where, u)
		}
		if pc.Rendered != pc.Expected || pc.Rendered < 0 {
			t.Errorf("%s: %d of %d charts drawn", where, pc.Rendered, pc.Expected)
		}
		for _, c := range pc.Charts {
			if c.Paths < 5 || c.Texts < 2 {
				t.Errorf("%s: chart %s drawn with %d shapes and %d texts", where, c.ID, c.Paths, c.Texts)
			}
		}
		if strings.Join(pc.Empty, ",") != strings.Join(wantEmpty, ",") {
			t.Errorf("%s: charts without data %v, want %v", where, pc.Empty, wantEmpty)
		}
		for _, s := range pc.Clipped {
			t.Errorf("%s: clipped text: %s", where, s)
		}
		for _, s := range pc.Overlaps {
			t.Errorf("%s: overlapping chart text: %s", where, s)
		}
		for _, s := range pc.Overflow {
			t.Errorf("%s: wider than the page: %s", where, s)
		}
	}
}
