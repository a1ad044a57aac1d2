// Helpers shared by the pages: API requests, element building, number formats and the
// loading, empty and error states. Every page reads only the public JSON API under /api.

export class ApiError extends Error {
	constructor(status, message) {
		super(message);
		this.status = status;
	}
}

// Fetches an API path as JSON. Throws ApiError with the HTTP status (0 when no response
// arrived) and the problem detail the daemon sent.
export async function api(path) {
	let response;
	try {
		response = await fetch(path, { headers: { Accept: 'application/json' } });
	} catch (err) {
		throw new ApiError(0, `the registry API did not respond (${err.message})`);
	}
	let body = null;
	try {
		body = await response.json();
	} catch {
		// A proxy error page is not JSON; the status alone explains the failure.
	}
	if (!response.ok) {
		const detail = body && body.detail ? body.detail : response.statusText;
		throw new ApiError(response.status, `${path} returned HTTP ${response.status}: ${detail}`);
	}
	if (body === null)
		throw new ApiError(response.status, `${path} did not return JSON`);
	return body;
}

// Creates an element. `attrs` sets attributes (a `class` key sets className, an `on*` key
// adds a listener); children are nodes or strings, and null children are skipped. Text is
// always inserted as text, never parsed as HTML.
export function el(tag, attrs = {}, ...children) {
	const node = document.createElement(tag);
	for (const [key, value] of Object.entries(attrs || {})) {
		if (value === null || value === undefined || value === false)
			continue;
		if (key === 'class')
			node.className = value;
		else if (key.startsWith('on'))
			node.addEventListener(key.slice(2), value);
		else
			node.setAttribute(key, value === true ? '' : String(value));
	}
	for (const child of children.flat(Infinity)) {
		if (child === null || child === undefined || child === false)
			continue;
		node.append(child instanceof Node ? child : String(child));
	}
	return node;
}

// Replaces the contents of `container` with a state message: kind is 'loading', 'empty'
// or 'error'. Extra nodes (a link, a hint) follow the message.
export function showState(container, kind, message, ...extra) {
	container.replaceChildren(el('div', { class: `state state-${kind}`,
		role: kind === 'error' ? 'alert' : 'status' }, el('p', {}, message), ...extra));
}

export function formatCount(n) {
	return typeof n === 'number' ? n.toLocaleString('en-US') : '–';
}

// A parameter count in short form, for example 731.9K or 7.24B.
export function formatShortCount(n) {
	if (typeof n !== 'number')
		return '–';
	for (const [unit, scale] of [['B', 1e9], ['M', 1e6], ['K', 1e3]]) {
		if (n >= scale)
			return `${(n / scale).toPrecision(4).replace(/\.?0+$/, '')}${unit}`;
	}
	return String(n);
}

export function formatBytes(n) {
	if (typeof n !== 'number')
		return '–';
	const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
	let value = n;
	let unit = 0;
	while (value >= 1024 && unit < units.length - 1) {
		value /= 1024;
		unit++;
	}
	return unit === 0 ? `${n} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

export function formatNumber(x, digits = 4) {
	return typeof x === 'number' ? x.toFixed(digits) : '–';
}

// A Unix time in seconds as a UTC date, or a date and time with `withTime`.
export function formatTime(seconds, withTime = false) {
	if (typeof seconds !== 'number')
		return '–';
	const iso = new Date(seconds * 1000).toISOString();
	return withTime ? `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC` : iso.slice(0, 10);
}

export function timeElement(seconds, withTime = false) {
	if (typeof seconds !== 'number')
		return '–';
	return el('time', { datetime: new Date(seconds * 1000).toISOString() },
		formatTime(seconds, withTime));
}

// The comparable sets of the statistics page, one per comparator. A ratio is comparable
// only with ratios of the same comparator and protocol.
export const comparators = {
	'canonical-transformer': { set: 'Transformer', short: 'transformer' },
	'architecture-compatible': { set: 'State-space and recurrent', short: 'same architecture' },
	'cls-cosine': { set: 'Vision', short: 'CLS cosine' },
};

export function comparatorLabel(name) {
	return comparators[name] ? comparators[name].short : name;
}

// A status badge: a version's verified, pending, failed or yanked, or a check's ok or mismatch.
export function badge(status) {
	const labels = { verified: 'Verified', pending: 'Pending', failed: 'Failed', yanked: 'Yanked',
		ok: 'OK', mismatch: 'Mismatch' };
	return el('span', { class: `badge badge-${status}` }, labels[status] || status);
}

// Appends to `head` a button that copies the text of `code`, and a status line that
// announces the result to screen readers.
export function addCopyButton(head, code, label) {
	const status = el('span', { class: 'copy-status', role: 'status' });
	const button = el('button', { type: 'button', class: 'copy', 'aria-label': `Copy: ${label}` }, 'Copy');
	button.addEventListener('click', async () => {
		try {
			await navigator.clipboard.writeText(code.textContent);
			status.textContent = 'Copied';
		} catch {
			// Clipboard access needs a secure context; select the text for a manual copy.
			window.getSelection().selectAllChildren(code);
			status.textContent = 'Press Ctrl+C to copy';
		}
		setTimeout(() => { status.textContent = ''; }, 3000);
	});
	head.append(status, button);
}

// A <pre> block of shell commands with a button that copies them.
export function commandBlock(label, text) {
	const code = el('code', {}, text);
	const head = el('div', { class: 'command-head' }, el('span', {}, label));
	addCopyButton(head, code, label);
	return el('div', { class: 'command' }, head, el('pre', { tabindex: '0' }, code));
}
