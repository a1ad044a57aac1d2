// The pack page, /packs/SLUG[?version=V]: metadata, versions, evaluations with their
// comparator, the verification report and the commands to download and verify the pack.
import { api, badge, commandBlock, comparatorLabel, el, formatBytes, formatCount,
	formatNumber, showState, timeElement } from './common.js';

const container = document.getElementById('pack');

function slugFromPath() {
	const match = /^\/packs\/([^/]+)\/?$/.exec(window.location.pathname);
	return match ? decodeURIComponent(match[1]) : null;
}

function versionStatus(version) {
	return version.yanked ? 'yanked' : version.status;
}

function facts(rows) {
	return el('dl', { class: 'facts' }, rows.filter(Boolean).map(([term, value]) =>
		[el('dt', {}, term), el('dd', {}, value)]));
}

function metadataSection(pack, version) {
	return el('section', { 'aria-labelledby': 'metadata' },
		el('h2', { id: 'metadata' }, 'Metadata'),
		facts([
			['Model', version.model_name || pack.name || '–'],
			['Family', pack.family || '–'],
			['Parameters', formatCount(version.parameters)],
			['Bits per weight', formatNumber(version.bits_per_weight, 3)],
			['Tensors', formatCount(version.tensor_count)],
			['Size', `${formatBytes(version.total_bytes)} (${formatCount(version.total_bytes)} bytes)`],
			['Owner', pack.owner || '–'],
			['Created', timeElement(pack.created_at, true)],
			['Manifest SHA-256', el('code', { class: 'digest' }, version.manifest_digest)],
			['Raw manifest', el('a', { href: version.downloads.manifest }, 'manifest.json')],
		]));
}

function versionsSection(pack, shown) {
	const rows = pack.versions.map((v) => el('tr', {},
		el('th', { scope: 'row' }, v.version === shown.version ? el('span', {}, v.version, ' (shown)')
			: el('a', { href: `?version=${encodeURIComponent(v.version)}` }, v.version)),
		el('td', {}, badge(versionStatus(v)),
			v.status_reason ? el('span', { class: 'subtle' }, v.status_reason) : null,
			v.yank_reason ? el('span', { class: 'subtle' }, `yanked: ${v.yank_reason}`) : null),
		el('td', {}, timeElement(v.created_at, true)),
		el('td', {}, timeElement(v.verified_at, true)),
		el('td', { class: 'num' }, formatNumber(v.bits_per_weight, 3)),
		el('td', {}, el('a', { href: `${v.url}/manifest`,
			'aria-label': `manifest of version ${v.version}` }, 'manifest'))));
	return el('section', { 'aria-labelledby': 'versions' },
		el('h2', { id: 'versions' }, 'Versions'),
		el('div', { class: 'table-scroll' }, el('table', {},
			el('caption', {}, 'Newest first. A yanked version stays readable but is never the latest.'),
			el('thead', {}, el('tr', {}, ['Version', 'Status', 'Published', 'Verified',
				'Bits per weight', 'Manifest'].map((h) => el('th', { scope: 'col' }, h)))),
			el('tbody', {}, rows))));
}

// Explains why a ratio measured against another comparator cannot be set beside the
// transformer rows. Returns null for the canonical transformer comparator.
function comparatorNote(evaluation) {
	const protocol = evaluation.protocol || {};
	const architecture = evaluation.architecture || 'this architecture';
	if (evaluation.comparator === 'architecture-compatible') {
		return el('div', { class: 'note', role: 'note' },
			el('p', {}, el('strong', {}, 'Not comparable with transformer rows. '),
				`This ratio compares the pack with the original ${architecture} weights, not with ` +
				'a canonical transformer. Perplexity depends on the architecture and on the ' +
				`tokenizer (here ${protocol.tokenizer || 'unknown'}), so the number can only be ` +
				'set beside other packs measured against their own architecture with the same ' +
				'protocol.'),
			el('p', {}, 'The statistics page puts it in the state-space and recurrent set.'));
	}
	if (evaluation.comparator === 'cls-cosine') {
		return el('div', { class: 'note', role: 'note' },
			el('p', {}, el('strong', {}, 'Not a perplexity ratio. '),
				'Vision models are measured by the cosine similarity of their CLS embeddings ' +
				'with and without compression, so this number cannot be compared with the ' +
				'perplexity ratios of language models.'));
	}
	if (evaluation.comparator !== 'canonical-transformer') {
		return el('div', { class: 'note', role: 'note' },
			el('p', {}, `Comparator ${evaluation.comparator} is not one this page knows; ` +
				'compare the ratio only with rows of the same comparator.'));
	}
	return null;
}

function protocolText(protocol) {
	const windowing = protocol.windowing || {};
	const windowText = Object.entries(windowing).map(([k, v]) => `${k}: ${v}`).join(', ');
	return [
		['Corpus', `${protocol.corpus || '–'}`],
		['Corpus SHA-256', el('code', { class: 'digest' }, protocol.corpus_sha256 || '–')],
		['Tokenizer', protocol.tokenizer || '–'],
		['Sequence length', protocol.seq_len === null || protocol.seq_len === undefined
			? 'whole document' : formatCount(protocol.seq_len)],
		['Windowing', windowText || '–'],
		protocol.documents ? ['Documents', formatCount(protocol.documents)] : null,
		['Scored tokens', formatCount(protocol.tokens)],
	];
}

function evaluationCard(evaluation) {
	const metric = evaluation.metric === 'ppl' ? 'Perplexity' : evaluation.metric;
	return el('article', { class: 'card evaluation' },
		el('h3', {}, `${metric} ratio ${formatNumber(evaluation.ratio)} `,
			el('span', { class: `tag tag-${evaluation.comparator}` },
				`comparator: ${comparatorLabel(evaluation.comparator)}`)),
		comparatorNote(evaluation),
		facts([
			['Comparator', el('code', {}, evaluation.comparator)],
			['Original weights', formatNumber(evaluation.baseline)],
			['Pack', formatNumber(evaluation.compressed)],
			['Ratio (pack / original)', formatNumber(evaluation.ratio, 6)],
			evaluation.architecture ? ['Architecture', evaluation.architecture] : null,
			...protocolText(evaluation.protocol || {}),
			['Harness', evaluation.harness || '–'],
			['Measured', evaluation.measured_at || '–'],
		]));
}

function evaluationsSection(version) {
	const evaluations = version.evaluations || [];
	return el('section', { 'aria-labelledby': 'evaluations' },
		el('h2', { id: 'evaluations' }, 'Evaluations'),
		evaluations.length ? evaluations.map(evaluationCard)
			: el('p', { class: 'state state-empty' }, 'No evaluation has been submitted for this version.'));
}

function tensorTable(tensors) {
	return el('details', {},
		el('summary', {}, `Per-tensor results (${tensors.length} tensors)`),
		el('div', { class: 'table-scroll' }, el('table', { class: 'tensors' },
			el('caption', {}, 'SQNR is the signal-to-quantisation-noise ratio of the rebuilt tensor, in dB.'),
			el('thead', {}, el('tr', {}, ['Tensor', 'Encoding', 'SQNR (dB)', 'Digest check',
				'SHA-256'].map((h) => el('th', { scope: 'col' }, h)))),
			el('tbody', {}, tensors.map((t) => el('tr', {},
				el('th', { scope: 'row' }, el('code', {}, t.name)),
				el('td', {}, t.encoding),
				el('td', { class: 'num' }, typeof t.sqnr_db === 'number' ? t.sqnr_db.toFixed(2) : '–'),
				el('td', {}, badge(t.ok ? 'ok' : 'mismatch')),
				el('td', {}, el('code', { class: 'digest' }, t.actual_sha256 || t.expected_sha256 || '–'))))))));
}

function verificationSection(version) {
	const verification = version.verification || {};
	const report = version.verify_report;
	const parts = [el('h2', { id: 'verification' }, 'Verification')];

	parts.push(el('p', {}, badge(version.status), ' ',
		version.status === 'pending' ? 'The registry has not verified this version yet.'
			: version.status === 'failed' ? `Verification failed: ${version.status_reason || verification.reason || 'see the report'}.`
				: 'The registry rebuilt every tensor and checked it against the manifest.'));
	if (!report) {
		// A manifest that fails the structure check at upload is recorded as failed without a job.
		parts.push(el('p', { class: 'muted' }, version.status === 'failed'
			? 'No verification report: the manifest failed the structure check when it was uploaded.'
			: 'No verification report is stored for this version yet.'));
		return el('section', { 'aria-labelledby': 'verification' }, parts);
	}

	const verifier = report.verifier || {};
	parts.push(facts([
		['Verdict', el('code', {}, report.verdict)],
		['Verifier', `${verifier.name || '–'} ${verifier.version || ''}`],
		['Instruction set', report.isa || '–'],
		['Threads', formatCount(report.threads)],
		['Bytes hashed', formatCount(report.bytes_hashed)],
		['Verified', timeElement(version.verified_at, true)],
		['Manifest SHA-256', el('code', { class: 'digest' }, report.manifest_sha256 || '–')],
	]));
	parts.push(el('div', { class: 'table-scroll' }, el('table', { class: 'stages' },
		el('caption', {}, 'Stages'),
		el('thead', {}, el('tr', {}, ['Stage', 'Result', 'Time'].map((h) => el('th', { scope: 'col' }, h)))),
		el('tbody', {}, (report.stages || []).map((s) => el('tr', {},
			el('th', { scope: 'row' }, s.name),
			el('td', {}, badge(s.status === 'ok' ? 'ok' : 'failed')),
			el('td', { class: 'num' }, typeof s.seconds === 'number' ? `${(s.seconds * 1000).toFixed(2)} ms` : '–')))))));
	if (report.errors && report.errors.length)
		parts.push(el('ul', { class: 'errors' }, report.errors.map((e) =>
			el('li', {}, typeof e === 'string' ? e : JSON.stringify(e)))));
	if (report.tensors && report.tensors.length)
		parts.push(tensorTable(report.tensors));
	return el('section', { 'aria-labelledby': 'verification' }, parts);
}

function downloadSection(pack, version) {
	if (version.status === 'failed') {
		return el('section', { 'aria-labelledby': 'download' },
			el('h2', { id: 'download' }, 'Download and verify'),
			el('p', { class: 'state state-empty' }, 'This version failed verification, so it is ' +
				'not offered for download. The raw manifest is linked above.'));
	}
	const origin = window.location.origin;
	const dir = `${pack.slug}-${version.version}`;
	const lines = [
		`mkdir ${dir} && cd ${dir}`,
		`curl -fsS -o manifest.json ${origin}${version.downloads.manifest}`,
		`echo "${version.manifest_digest}  manifest.json" | sha256sum -c`,
		...version.downloads.shards.map((s) => `curl -fsS -o ${s.digest} ${origin}${s.url}`),
		'uc verify .',
	];
	const pull = `uc pull ${pack.slug}@${version.version} --registry ${origin} -o ${dir}`;
	return el('section', { 'aria-labelledby': 'download' },
		el('h2', { id: 'download' }, 'Download and verify'),
		el('p', {}, el('code', {}, 'uc pull'), ' downloads the pack, checks every shard digest, ' +
			'runs the full verification of ', el('code', {}, 'uc verify'), ' and only then ' +
			'creates the directory:'),
		version.status === 'pending' ? el('div', { class: 'note', role: 'note' }, el('p', {},
			'The registry has not verified this version yet, so uc pull may reject it until ' +
			'it does.')) : null,
		commandBlock('Download with uc pull', pull),
		el('p', {}, 'Or, without uc pull: fetch the manifest and each shard, check the manifest against the digest ' +
			'listed here, then let ', el('code', {}, 'uc verify'), ' check every shard digest ' +
			'and rebuild every tensor. It prints RECONSTRUCTION OK and exits with status 0 ' +
			'when the pack is intact.'),
		commandBlock('Download with curl and verify', lines.join('\n')),
		version.downloads.shards.length ? el('p', {}, 'Shards: ', version.downloads.shards.map((s, i) =>
			[i ? ', ' : '', el('a', { href: s.url }, `${s.digest.slice(0, 12)}…`),
				` (${formatBytes(s.size)})`])) : null);
}

async function render() {
	const slug = slugFromPath();
	if (!slug) {
		showState(container, 'error', 'This address does not name a pack.');
		return;
	}
	let pack;
	try {
		pack = await api(`/api/packs/${encodeURIComponent(slug)}`);
	} catch (err) {
		if (err.status === 404) {
			document.title = 'Pack not found · uc-registry';
			container.replaceChildren(el('h1', {}, 'Pack not found'),
				el('p', {}, `The registry has no pack named “${slug}”.`),
				el('p', {}, el('a', { href: '/' }, 'Back to the catalog')));
			return;
		}
		container.replaceChildren(el('h1', {}, slug));
		container.append(el('div', { class: 'state state-error', role: 'alert' },
			el('p', {}, `The pack could not be loaded: ${err.message}.`),
			el('p', {}, 'Reload the page to try again.')));
		return;
	}

	const wanted = new URLSearchParams(window.location.search).get('version');
	const summary = (wanted && pack.versions.find((v) => v.version === wanted)) ||
		pack.latest || pack.versions[0];
	document.title = `${pack.slug} · uc-registry`;
	if (!summary) {
		container.replaceChildren(el('h1', {}, pack.slug),
			el('p', { class: 'state state-empty' }, 'This pack has no versions.'));
		return;
	}

	let version;
	try {
		version = await api(`/api/packs/${encodeURIComponent(slug)}/versions/${encodeURIComponent(summary.version)}`);
	} catch (err) {
		showState(container, 'error', `Version ${summary.version} could not be loaded: ${err.message}.`);
		return;
	}

	const subtitle = [pack.name, `version ${version.version}`].filter(Boolean).join(' · ');
	container.replaceChildren(
		el('h1', {}, pack.slug, ' ', el('span', { class: 'subtle' }, `${subtitle} · `,
			badge(versionStatus(version)))),
		version.yanked ? el('div', { class: 'note', role: 'note' }, el('p', {},
			el('strong', {}, 'Yanked: '), version.yank_reason || 'no reason given', '. ',
			'The version stays readable, but it is not the pack\'s latest version and the ' +
			'statistics exclude it.')) : '',
		metadataSection(pack, version),
		evaluationsSection(version),
		verificationSection(version),
		downloadSection(pack, version),
		versionsSection(pack, version));
}

render();
