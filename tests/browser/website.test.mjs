// Browser tests of the website: headless Debian chromium, driven by playwright-core,
// against a real ucregd loaded with packs built from the shared models. Every page is
// saved as a screenshot at desktop width and at 360 px under
// $UC_TOP_BUILDDIR/tests/browser/screenshots/.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

import { Registry, missingPrerequisite, packSpecs, topBuilddir } from './registry.mjs';

const run = promisify(execFile);
const chromiumPath = process.env.UC_CHROMIUM || '/usr/bin/chromium';
const screenshotDir = path.join(topBuilddir, 'tests/browser/screenshots');
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
const SCREENS = [['desktop', 1280, 900], ['360', 360, 800]];

const missing = missingPrerequisite(chromiumPath);
let registry;
let browser;
let userDataDir;
const offLoopback = [];

// Launches chromium with exactly the flags below, a fresh profile and the pipe playwright
// drives it through. ignoreDefaultArgs keeps playwright from adding its own flags.
async function launchBrowser() {
	userDataDir = mkdtempSync(path.join(tmpdir(), 'uc-web-chromium-'));
	return chromium.launch({
		executablePath: chromiumPath,
		headless: true,
		ignoreDefaultArgs: true,
		args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
			'--disable-component-update', '--disable-sync', '--no-first-run',
			`--user-data-dir=${userDataDir}`, '--remote-debugging-pipe'],
	});
}

// A browser context whose every request is checked: a request to a host other than
// loopback is recorded and aborted, so it can neither leak nor pass by accident.
async function newContext(width = 1280, height = 900) {
	const context = await browser.newContext({ viewport: { width, height } });
	await context.route('**/*', (route) => {
		const url = new URL(route.request().url());
		if (url.protocol === 'data:' || url.protocol === 'blob:' || LOOPBACK_HOSTS.has(url.hostname))
			return route.continue();
		offLoopback.push(url.href);
		return route.abort('blockedbyclient');
	});
	return context;
}

// Opens `urlPath` in a fresh page, waits for the page's script to finish loading data and
// collects script errors. Returns { page, response, errors }.
async function open(context, urlPath, readySelector) {
	const page = await context.newPage();
	const errors = [];
	page.on('pageerror', (err) => errors.push(err.message));
	page.on('console', (msg) => {
		if (msg.type() === 'error')
			errors.push(msg.text());
	});
	const response = await page.goto(registry.origin + urlPath);
	if (readySelector)
		await page.waitForSelector(readySelector);
	return { page, response, errors };
}

// Saves `urlPath` at every screen width and checks that no page is wider than its screen.
async function screenshotAll(name, urlPath, readySelector) {
	for (const [screen, width, height] of SCREENS) {
		const context = await newContext(width, height);
		const { page } = await open(context, urlPath, readySelector);
		await page.screenshot({ path: path.join(screenshotDir, `${name}-${screen}.png`), fullPage: true });
		const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
		assert.ok(scrollWidth <= width, `${urlPath} is ${scrollWidth} px wide on a ${width} px screen`);
		await context.close();
	}
}

function rowSlugs(page) {
	return page.$$eval('table.catalog tbody th a', (links) => links.map((a) => a.textContent));
}

describe('website', { skip: missing || false }, () => {
	before(async () => {
		mkdirSync(screenshotDir, { recursive: true });
		registry = await new Registry().start();
		for (const spec of packSpecs)
			await registry.publish(spec);
		browser = await launchBrowser();
	});

	after(async () => {
		if (browser)
			await browser.close();
		if (userDataDir)
			rmSync(userDataDir, { recursive: true, force: true });
		if (registry)
			await registry.stop();
		assert.deepEqual(offLoopback, [], 'requests left loopback');
	});

	test('catalog lists every pack', async () => {
		const context = await newContext();
		const { page, errors } = await open(context, '/', 'table.catalog');
		assert.deepEqual(await rowSlugs(page), ['stories-260k', 'tiny-rwkv-5v1', 'tiny-rwkv-5v2']);
		const storiesRow = page.locator('tr', { has: page.locator('a', { hasText: 'stories-260k' }) });
		assert.match(await storiesRow.textContent(), /dense/);
		assert.match(await storiesRow.textContent(), /transformer/);
		assert.match(await storiesRow.textContent(), /Verified/);
		assert.match(await page.title(), /Packs/);
		assert.deepEqual(errors, []);
		await context.close();
	});

	test('catalog family filter changes rows', async () => {
		const context = await newContext();
		const { page } = await open(context, '/', 'table.catalog');
		await page.selectOption('#family', 'recurrent');
		await Promise.all([page.waitForURL(/family=recurrent/), page.click('#filters button[type=submit]')]);
		await page.waitForSelector('table.catalog');
		assert.deepEqual(await rowSlugs(page), ['tiny-rwkv-5v1', 'tiny-rwkv-5v2']);
		assert.equal(await page.inputValue('#family'), 'recurrent');
		await context.close();
	});

	test('catalog comparator filter changes rows', async () => {
		const context = await newContext();
		const { page } = await open(context, '/?comparator=canonical-transformer', 'table.catalog');
		assert.deepEqual(await rowSlugs(page), ['stories-260k']);
		await context.close();
	});

	test('catalog text search changes rows', async () => {
		const context = await newContext();
		const { page } = await open(context, '/', 'table.catalog');
		await page.fill('#q', '5v1');
		await Promise.all([page.waitForURL(/q=5v1/), page.press('#q', 'Enter')]);
		await page.waitForSelector('table.catalog');
		assert.deepEqual(await rowSlugs(page), ['tiny-rwkv-5v1']);
		await context.close();
	});

	test('catalog sorts by parameters column', async () => {
		const context = await newContext();
		const { page } = await open(context, '/', 'table.catalog');
		await Promise.all([page.waitForURL(/sort=parameters/),
			page.click('thead th a:has-text("Parameters")')]);
		await page.waitForSelector('table.catalog');
		assert.deepEqual(await rowSlugs(page), ['stories-260k', 'tiny-rwkv-5v1', 'tiny-rwkv-5v2']);
		await Promise.all([page.waitForURL(/sort=-parameters/),
			page.click('thead th a:has-text("Parameters")')]);
		await page.waitForSelector('table.catalog');
		assert.deepEqual(await rowSlugs(page), ['tiny-rwkv-5v2', 'tiny-rwkv-5v1', 'stories-260k']);
		assert.equal(await page.getAttribute('thead th[aria-sort]', 'aria-sort'), 'descending');
		await context.close();
	});

	test('catalog sorts by ratio column', async () => {
		const listed = await registry.expect('GET', '/api/packs?limit=500', [200]);
		const byRatio = listed.packs.filter((p) => p.latest && typeof p.latest.ratio === 'number')
			.sort((a, b) => a.latest.ratio - b.latest.ratio).map((p) => p.slug);
		assert.equal(byRatio.length, packSpecs.length, 'every test pack carries a ratio');

		const context = await newContext();
		const { page, errors } = await open(context, '/', 'table.catalog');
		await Promise.all([page.waitForURL(/sort=ratio/), page.click('thead th a:has-text("PPL ratio")')]);
		await page.waitForSelector('table.catalog');
		assert.deepEqual(await rowSlugs(page), byRatio);
		const displayedRatios = await page.$$eval('table.catalog tbody .ratio',
			(cells) => cells.map((c) => Number(c.textContent)));
		assert.deepEqual(displayedRatios, [...displayedRatios].sort((a, b) => a - b));
		await Promise.all([page.waitForURL(/sort=-ratio/), page.click('thead th a:has-text("PPL ratio")')]);
		await page.waitForSelector('table.catalog');
		assert.deepEqual(await rowSlugs(page), [...byRatio].reverse());
		assert.equal(await page.getAttribute('thead th[aria-sort]', 'aria-sort'), 'descending');
		assert.equal(await page.inputValue('#sort'), '-ratio');
		assert.deepEqual(errors, []);
		await context.close();
	});

	test('catalog headers all sort', async () => {
		const context = await newContext();
		const { page } = await open(context, '/', 'table.catalog');
		const sortable = await page.$$eval('thead th a', (links) => links.map((a) => a.firstChild.textContent));
		assert.deepEqual(sortable, ['Pack', 'Family', 'Parameters', 'Bits per weight', 'PPL ratio',
			'Added', 'Last update']);
		await Promise.all([page.waitForURL(/sort=family/), page.click('thead th a:has-text("Family")')]);
		await page.waitForSelector('table.catalog');
		// Equal families keep the order of publication, which is the order of pack ids.
		assert.deepEqual(await rowSlugs(page), ['stories-260k', 'tiny-rwkv-5v2', 'tiny-rwkv-5v1']);
		await page.goto(`${registry.origin}/?sort=-updated`);
		await page.waitForSelector('table.catalog');
		// Packs were published in packSpecs order, so the last one has the newest change.
		// Changes in the same second tie, and the later pack id then comes first as well.
		assert.deepEqual(await rowSlugs(page), packSpecs.map((spec) => spec.slug).reverse());
		await context.close();
	});

	test('catalog page view makes one API request', async () => {
		const context = await newContext();
		const page = await context.newPage();
		const requests = [];
		page.on('request', (request) => requests.push(new URL(request.url()).pathname));
		await page.goto(`${registry.origin}/`);
		await page.waitForSelector('table.catalog');
		await page.waitForLoadState('networkidle');
		const apiRequests = requests.filter((p) => p.startsWith('/api/'));
		assert.deepEqual(apiRequests, ['/api/packs'], `API requests: ${apiRequests.join(', ')}`);
		// A view loads the document, one stylesheet, two scripts, the icon and the list, so
		// it makes at most six requests however many packs it shows.
		assert.ok(requests.length <= 6, `a catalog view made ${requests.length} requests: ${requests.join(', ')}`);
		const storiesRow = page.locator('tr', { has: page.locator('a', { hasText: 'stories-260k' }) });
		assert.match(await storiesRow.locator('td[data-label="Last update"]').textContent(), /^\d{4}-\d\d-\d\d$/);
		await context.close();
	});

	test('stats page makes one API request', async () => {
		const context = await newContext();
		const page = await context.newPage();
		const requests = [];
		page.on('request', (request) => requests.push(new URL(request.url()).pathname));
		await page.goto(`${registry.origin}/stats`);
		await page.waitForSelector('#plot canvas');
		await page.waitForLoadState('networkidle');
		assert.deepEqual(requests.filter((p) => p.startsWith('/api/')), ['/api/stats']);
		await context.close();
	});

	test('catalog pages follow the cursor', async () => {
		const context = await newContext();
		const { page } = await open(context, '/?limit=2', 'table.catalog');
		assert.deepEqual(await rowSlugs(page), ['stories-260k', 'tiny-rwkv-5v1']);
		assert.equal(await page.locator('a[rel=first]').count(), 0);
		await Promise.all([page.waitForURL(/cursor=/), page.click('a[rel=next]')]);
		await page.waitForSelector('table.catalog');
		assert.deepEqual(await rowSlugs(page), ['tiny-rwkv-5v2']);
		assert.equal(await page.locator('a[rel=next]').count(), 0);
		await Promise.all([page.waitForURL((url) => !url.search.includes('cursor')),
			page.click('a[rel=first]')]);
		await page.waitForSelector('table.catalog');
		assert.deepEqual(await rowSlugs(page), ['stories-260k', 'tiny-rwkv-5v1']);
		await context.close();
	});

	test('catalog no match shows empty state', async () => {
		const context = await newContext();
		const { page } = await open(context, '/?q=no-such-model', '.state-empty');
		assert.match(await page.textContent('.state-empty'), /No packs match these filters/);
		await context.close();
	});

	test('catalog API down shows error state', async () => {
		const context = await newContext();
		await context.route('**/api/**', (route) => route.abort('connectionrefused'));
		const { page } = await open(context, '/', '.state-error');
		assert.match(await page.textContent('.state-error'), /could not be loaded/);
		await page.screenshot({ path: path.join(screenshotDir, 'catalog-api-down-desktop.png') });
		await context.close();
	});

	test('skip link is first in tab order', async () => {
		const context = await newContext();
		const { page } = await open(context, '/', 'table.catalog');
		await page.keyboard.press('Tab');
		assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
		await context.close();
	});

	test('pack page shows verification report', async () => {
		const context = await newContext();
		const { page, response, errors } = await open(context, '/packs/tiny-rwkv-5v2', '#verification');
		assert.equal(response.status(), 200);
		assert.match(await page.title(), /tiny-rwkv-5v2/);
		const section = page.locator('section[aria-labelledby="verification"]');
		const text = await section.textContent();
		assert.match(text, /Verdict\s*ok/);
		assert.match(text, /Verifier\s*libuc/);
		assert.match(text, /Instruction set/);
		for (const stage of ['structure', 'integrity', 'reconstruction'])
			assert.match(text, new RegExp(stage));

		const details = section.locator('details');
		assert.equal(await details.getAttribute('open'), null, 'the tensor table starts collapsed');
		await details.locator('summary').click();
		assert.equal(await section.locator('table.tensors tbody tr').count(), 270);
		assert.match(await section.locator('table.tensors tbody tr').first().textContent(), /\d+\.\d\d/);
		assert.deepEqual(errors, []);
		await context.close();
	});

	test('recurrent pack shows comparator note', async () => {
		const context = await newContext();
		const { page } = await open(context, '/packs/tiny-rwkv-5v2', '#evaluations');
		const note = page.locator('.evaluation .note');
		assert.equal(await note.count(), 1);
		assert.match(await note.textContent(), /Not comparable with transformer rows/);
		assert.match(await page.textContent('.evaluation'), /architecture-compatible/);
		await context.close();
	});

	test('transformer pack has no comparator note', async () => {
		const context = await newContext();
		const { page } = await open(context, '/packs/stories-260k', '#evaluations');
		assert.equal(await page.locator('.evaluation').count(), 1);
		assert.equal(await page.locator('.evaluation .note').count(), 0);
		await context.close();
	});

	test('pack page download commands work', async () => {
		const context = await newContext();
		const { page } = await open(context, '/packs/stories-260k', '#download');
		const [pull, commands] = await page.locator('section[aria-labelledby="download"] pre').allTextContents();
		assert.match(pull, /^uc pull stories-260k@1\.0\.0 --registry http:\/\/127\.0\.0\.1:\d+ -o stories-260k-1\.0\.0$/);
		assert.match(commands, /uc verify \./);
		const manifestHref = await page.getAttribute('a:has-text("manifest.json")', 'href');
		assert.equal(manifestHref, '/api/packs/stories-260k/versions/1.0.0/manifest');
		await context.close();

		// The shown commands run as they are, with this build's uc on PATH.
		const dir = mkdtempSync(path.join(tmpdir(), 'uc-web-download-'));
		try {
			const env = { ...process.env, PATH: `${path.join(topBuilddir, 'cli')}:${process.env.PATH}` };
			const { stdout } = await run('sh', ['-ec', commands], { cwd: dir, env });
			assert.match(stdout, /manifest.json: OK/);
			assert.match(stdout, /RECONSTRUCTION OK/);

			const pullDir = path.join(dir, 'pull');
			mkdirSync(pullDir);
			await run('sh', ['-ec', pull], { cwd: pullDir, env });
			assert.ok(existsSync(path.join(pullDir, 'stories-260k-1.0.0', 'manifest.json')),
				'uc pull created no manifest.json');
		} finally {
			rmSync(dir, { recursive: true, force: true });
		}
	});

	test('stats page shows panels and plot', async () => {
		const context = await newContext();
		const { page, errors } = await open(context, '/stats', '#plot canvas');
		const panels = page.locator('.panel');
		assert.equal(await panels.count(), 3);
		const transformer = page.locator('.panel[data-comparator="canonical-transformer"]');
		const recurrent = page.locator('.panel[data-comparator="architecture-compatible"]');
		const vision = page.locator('.panel[data-comparator="cls-cosine"]');
		assert.match(await transformer.locator('h2').textContent(), /Transformer/);
		assert.equal(await transformer.locator('.summary div:has(dt:text-is("Count")) dd').textContent(), '1');
		assert.equal(await transformer.locator('table.included tbody tr').count(), 1);
		assert.match(await recurrent.locator('h2').textContent(), /State-space and recurrent/);
		assert.equal(await recurrent.locator('.summary div:has(dt:text-is("Count")) dd').textContent(), '2');
		assert.equal(await recurrent.locator('table.included tbody tr').count(), 2);
		assert.match(await vision.textContent(), /No evaluations in this set yet/);
		assert.equal(await page.getAttribute('#plot', 'data-points'), '3');
		assert.match(await page.getAttribute('#plot .plot-area', 'aria-label'), /3 perplexity ratios/);
		assert.deepEqual(errors, []);
		await context.close();
	});

	test('unknown slug gives 404 page', async () => {
		const context = await newContext();
		const { page, response } = await open(context, '/packs/no-such-pack', 'h1');
		assert.equal(response.status(), 404);
		assert.equal(await page.textContent('h1'), 'Page not found');
		assert.match(await page.title(), /Page not found/);
		await context.close();
	});

	test('unknown path gives 404 page', async () => {
		const context = await newContext();
		const { page, response } = await open(context, '/no/such/page', 'h1');
		assert.equal(response.status(), 404);
		assert.equal(await page.textContent('h1'), 'Page not found');
		await context.close();
	});

	test('pages send a same-origin CSP', async () => {
		const context = await newContext();
		for (const urlPath of ['/', '/stats', '/submit', '/packs/stories-260k', '/api/packs']) {
			const { response } = await open(context, urlPath);
			assert.match(response.headers()['content-security-policy'] || '', /default-src 'self'/,
				`${urlPath} has no Content-Security-Policy`);
		}
		await context.close();
	});

	test('submit page names this registry', async () => {
		const context = await newContext();
		const { page, errors } = await open(context, '/submit', 'button.copy');
		const commands = await page.locator('pre code').allTextContents();
		assert.ok(commands.some((text) => text.includes(`REGISTRY=${registry.origin}`)));
		assert.ok(await page.locator('button.copy').count() >= 3);
		assert.deepEqual(errors, []);
		await context.close();
	});

	test('empty catalog shows empty state', async () => {
		const empty = await new Registry().start();
		try {
			const context = await newContext();
			const page = await context.newPage();
			await page.goto(`${empty.origin}/`);
			await page.waitForSelector('.state-empty');
			assert.match(await page.textContent('.state-empty'), /The registry has no packs yet/);
			await page.screenshot({ path: path.join(screenshotDir, 'catalog-empty-desktop.png') });
			await context.close();
		} finally {
			await empty.stop();
		}
	});

	test('failed version shows its reason', async () => {
		const other = await new Registry().start();
		try {
			await other.expect('PUT', '/api/packs/broken-pack/versions/0.1.0', [422],
				JSON.stringify({ format: 'not-a-pack' }), { 'Content-Type': 'application/json' });
			const context = await newContext();
			const page = await context.newPage();
			await page.goto(`${other.origin}/packs/broken-pack`);
			await page.waitForSelector('#verification');
			const verification = await page.textContent('section[aria-labelledby="verification"]');
			assert.match(verification, /Verification failed: .*not-a-pack/);
			const download = await page.textContent('section[aria-labelledby="download"]');
			assert.match(download, /not offered for download/);
			assert.equal(await page.locator('section[aria-labelledby="download"] pre').count(), 0);
			await page.screenshot({ path: path.join(screenshotDir, 'pack-failed-desktop.png'), fullPage: true });
			await context.close();
		} finally {
			await other.stop();
		}
	});

	test('every page fits desktop and 360 px', async () => {
		await screenshotAll('catalog', '/', 'table.catalog');
		await screenshotAll('catalog-recurrent', '/?family=recurrent', 'table.catalog');
		await screenshotAll('pack-tiny-rwkv-5v2', '/packs/tiny-rwkv-5v2', '#verification');
		await screenshotAll('pack-stories-260k', '/packs/stories-260k', '#verification');
		await screenshotAll('stats', '/stats', '#plot canvas');
		await screenshotAll('submit', '/submit', 'button.copy');
		await screenshotAll('not-found', '/packs/no-such-pack', 'h1');
	});
});
