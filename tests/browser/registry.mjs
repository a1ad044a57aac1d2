// Starts a real ucregd on a free loopback port with a temporary data directory. It loads
// the daemon with packs that `uc pack` builds from the real models in UC_DATA_DIR. The
// daemon verifies each pack, and each carries the evaluation record `uc eval` measured.
import { execFile, spawn } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync,
	readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));

export const topSrcdir = process.env.UC_TOP_SRCDIR || path.resolve(here, '../..');
export const topBuilddir = process.env.UC_TOP_BUILDDIR || path.join(topSrcdir, 'build/web');
export const dataDir = process.env.UC_DATA_DIR || path.resolve(topSrcdir, '../shared/data');

const ucregd = path.join(topBuilddir, 'server/ucregd');
const uc = path.join(topBuilddir, 'cli/uc');
const startTimeoutMs = 10000;
const verifyTimeoutMs = 30000;

// The packs the tests load: one transformer, measured against the canonical transformer
// comparator, and two recurrent models, measured against their own architecture.
export const packSpecs = [
	{ slug: 'stories-260k', source: 'stories260K.safetensors', family: 'dense',
	  name: 'stories260K', tokenizer: 'tok512.bin' },
	{ slug: 'tiny-rwkv-5v2', source: 'tiny-rwkv-5v2-730K.safetensors', family: 'recurrent',
	  name: 'tiny-rwkv-5v2-730K' },
	{ slug: 'tiny-rwkv-5v1', source: 'tiny-rwkv-5v1-730K.safetensors', family: 'recurrent',
	  name: 'tiny-rwkv-5v1-730K' },
];

// Returns the reason the tests cannot run here, or null when everything they need exists.
export function missingPrerequisite(chromiumPath) {
	const needed = [[ucregd, 'the ucregd binary (build the tree first)'],
		[uc, 'the uc binary (build the tree first)'],
		[chromiumPath, 'Debian chromium (apt-get install chromium)'],
		[path.join(dataDir, 'stories260K.safetensors'), 'the shared models (set UC_DATA_DIR)']];
	for (const [file, what] of needed) {
		if (!existsSync(file))
			return `${file} is missing: ${what}`;
	}
	return null;
}

export class Registry {
	constructor({ staticDir = path.join(topSrcdir, 'static') } = {}) {
		this.staticDir = staticDir;
		this.dir = mkdtempSync(path.join(tmpdir(), 'uc-web-'));
		this.dataDir = path.join(this.dir, 'data');
		this.logPath = path.join(this.dir, 'ucregd.log');
		this.proc = null;
		this.port = null;
		this.token = null;
	}

	get origin() {
		return `http://127.0.0.1:${this.port}`;
	}

	log() {
		return existsSync(this.logPath) ? readFileSync(this.logPath, 'utf8') : '';
	}

	async start() {
		const { stdout } = await run(ucregd, ['--data-dir', this.dataDir, 'token', 'create',
			'--name', 'browser-tests', '--scope', 'admin']);
		this.token = stdout.trim().split('\n').pop();

		const logFd = openSync(this.logPath, 'w');
		this.proc = spawn(ucregd, ['--listen', '127.0.0.1:0', '--data-dir', this.dataDir,
			'--static-dir', this.staticDir, '--workers', '1'],
			{ stdio: ['ignore', logFd, logFd] });
		closeSync(logFd);
		// A test runner that dies on an uncaught error must not leave the daemon behind.
		const proc = this.proc;
		process.once('exit', () => proc.exitCode === null && proc.kill('SIGKILL'));

		const deadline = Date.now() + startTimeoutMs;
		while (Date.now() < deadline) {
			const match = /listening on \S+ \(port (\d+)\)/.exec(this.log());
			if (match) {
				this.port = Number(match[1]);
				return this;
			}
			if (this.proc.exitCode !== null)
				throw new Error(`ucregd exited at start:\n${this.log()}`);
			await new Promise((resolve) => setTimeout(resolve, 20));
		}
		throw new Error(`ucregd did not start listening within ${startTimeoutMs} ms:\n${this.log()}`);
	}

	// Sends one API request with the admin token; returns { status, body } with the body
	// parsed when it is JSON.
	async request(method, urlPath, body, headers = {}) {
		const response = await fetch(this.origin + urlPath, {
			method, body, duplex: 'half',
			headers: { Authorization: `Bearer ${this.token}`, ...headers },
		});
		const text = await response.text();
		let parsed = text;
		try {
			parsed = JSON.parse(text);
		} catch {
			// The body is not JSON; callers see the text.
		}
		return { status: response.status, body: parsed, headers: response.headers };
	}

	async expect(method, urlPath, statuses, body, headers) {
		const result = await this.request(method, urlPath, body, headers);
		if (!statuses.includes(result.status))
			throw new Error(`${method} ${urlPath} returned ${result.status}: ` +
				JSON.stringify(result.body));
		return result.body;
	}

	// Builds, uploads and verifies one pack, then posts its evaluation record.
	async publish(spec, version = '1.0.0') {
		const packDir = path.join(this.dir, 'packs', spec.slug);
		mkdirSync(path.dirname(packDir), { recursive: true });
		await run(uc, ['pack', path.join(dataDir, spec.source), '-o', packDir, '--family',
			spec.family, '--name', spec.name, '--license', 'MIT']);

		for (const file of readdirSync(packDir)) {
			if (file === 'manifest.json')
				continue;
			const shard = path.join(packDir, file);
			await this.expect('PUT', `/api/blobs/sha256/${file}`, [200, 201],
				createReadStream(shard), { 'Content-Length': String(statSync(shard).size) });
		}
		const manifest = readFileSync(path.join(packDir, 'manifest.json'));
		const accepted = await this.expect('PUT', `/api/packs/${spec.slug}/versions/${version}`,
			[202], manifest, { 'Content-Type': 'application/json' });
		await this.waitForJob(accepted.job);

		const evalArgs = ['eval', '--source', path.join(dataDir, spec.source), '--pack', packDir,
			'--corpus', path.join(dataDir, 'tinystories_sample.txt'), '--json'];
		if (spec.tokenizer)
			evalArgs.push('--tokenizer', path.join(dataDir, spec.tokenizer));
		const { stdout } = await run(uc, evalArgs);
		await this.expect('POST', `/api/packs/${spec.slug}/versions/${version}/evaluations`,
			[201], stdout, { 'Content-Type': 'application/json' });
		return JSON.parse(stdout);
	}

	async waitForJob(jobUrl) {
		const deadline = Date.now() + verifyTimeoutMs;
		while (Date.now() < deadline) {
			const job = await this.expect('GET', jobUrl, [200]);
			if (job.state === 'done' || job.state === 'failed')
				return job;
			await new Promise((resolve) => setTimeout(resolve, 50));
		}
		throw new Error(`verify job ${jobUrl} did not finish within ${verifyTimeoutMs} ms`);
	}

	// Stops the daemon with SIGTERM and removes the temporary directory. Throws when the
	// daemon's log shows a sanitizer finding or the daemon did not exit with status 0.
	async stop() {
		let code = 0;
		if (this.proc && this.proc.exitCode === null) {
			const exited = new Promise((resolve) => this.proc.once('exit', resolve));
			this.proc.kill('SIGTERM');
			code = await exited;
		} else if (this.proc) {
			code = this.proc.exitCode;
		}
		const log = this.log();
		rmSync(this.dir, { recursive: true, force: true });
		// UBSan reports without changing the exit status, so the log is searched as well.
		for (const marker of ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:']) {
			const at = log.indexOf(marker);
			if (at >= 0)
				throw new Error(`sanitizer finding in ucregd:\n${log.slice(at, at + 4000)}`);
		}
		if (code !== 0)
			throw new Error(`ucregd exited with ${code}:\n${log.slice(-4000)}`);
	}
}
