// Drives the dashboard in headless Chromium: opens the overview, follows the
// Matches link, clicks the button whose text is given, and prints the text
// of the page before and after as JSON on stdout.
// Usage: node decide-match.cjs BASE_URL BUTTON_TEXT
// Needs WEIR_PLAYWRIGHT_CORE (the playwright-core package folder) and the
// system Chromium (WEIR_CHROMIUM, default /usr/bin/chromium).
const { chromium } = require(process.env.WEIR_PLAYWRIGHT_CORE);

(async () => {
  const [base, button] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.WEIR_CHROMIUM || '/usr/bin/chromium',
    args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`${base}/ui`);
    await page.click('nav >> text=Matches');
    await page.waitForURL(`${base}/ui/matches`);
    const before = await page.textContent('body');
    await page.click(`button:has-text(${JSON.stringify(button)})`);
    // The form posts, then the service sends the browser back to this page,
    // which shows the decision, or no match once the pass it woke carried
    // it out.
    await page.waitForSelector('text=/decided:|No match held/');
    const after = await page.textContent('body');
    console.log(JSON.stringify({ before, after, url: page.url() }));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e && e.stack || String(e));
  process.exit(1);
});
