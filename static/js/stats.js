// The statistics page: one panel per comparable set from GET /api/stats, and a scatter
// plot of each included perplexity ratio against the version's parameter count, drawn with
// uPlot. Ratios of other metrics (CLS cosine) are in their panel but not in the plot.
import { api, comparators, el, formatCount, formatNumber, formatShortCount,
	showState } from './common.js';

const container = document.getElementById('stats');

// Marker colours by pack family, and line colours of each set's median.
const FAMILY_COLOURS = { dense: '#1f6fd1', moe: '#0f8a7e', ssm: '#b35c00', recurrent: '#8e3bd6',
	hybrid: '#c2185b', vit: '#5d7a00', other: '#57606a' };
const MEDIAN_COLOURS = { 'canonical-transformer': '#1f6fd1', 'architecture-compatible': '#8e3bd6',
	'cls-cosine': '#b35c00' };

function setName(comparator) {
	return comparators[comparator] ? comparators[comparator].set : `Comparator ${comparator}`;
}

function groupTitle(group) {
	const p = group.protocol || {};
	const metric = group.metric === 'ppl' ? 'Perplexity ratio' : `${group.metric} ratio`;
	const length = p.seq_len ? `sequence length ${p.seq_len}` : 'whole documents';
	return `${metric} on ${p.corpus || 'unknown corpus'} (${p.tokenizer || 'unknown tokenizer'}, ${length})`;
}

function summary(group) {
	const cells = [['Count', formatCount(group.count)], ['Median', formatNumber(group.median)],
		['Mean', formatNumber(group.mean)], ['Min', formatNumber(group.min)],
		['Max', formatNumber(group.max)]];
	return el('dl', { class: 'summary' }, cells.map(([term, value]) =>
		el('div', {}, el('dt', {}, term), el('dd', {}, value))));
}

function packLink(row) {
	return el('a', { href: `/packs/${encodeURIComponent(row.slug)}?version=${encodeURIComponent(row.version)}` },
		`${row.slug} ${row.version}`);
}

function rowsTable(caption, rows, withReason) {
	const headers = ['Pack', 'Ratio', ...(withReason ? ['Reason excluded'] : [])];
	return el('div', { class: 'table-scroll' }, el('table', { class: withReason ? 'excluded' : 'included' },
		el('caption', {}, caption),
		el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col' }, h)))),
		el('tbody', {}, rows.map((row) => el('tr', {},
			el('th', { scope: 'row' }, packLink(row)),
			el('td', { class: 'num' }, formatNumber(row.ratio)),
			withReason ? el('td', {}, row.reason) : null)))));
}

function groupSection(group) {
	const excluded = group.excluded || [];
	return el('section', { class: 'group' },
		el('h3', {}, groupTitle(group)),
		summary(group),
		group.included.length ? rowsTable('Included rows', group.included, false)
			: el('p', { class: 'muted' }, 'No row counts yet.'),
		excluded.length ? rowsTable('Excluded rows', excluded, true)
			: el('p', { class: 'muted' }, 'No excluded rows.'));
}

function panel(comparator, entry) {
	const id = `set-${comparator}`;
	const groups = entry ? entry.groups : [];
	return el('section', { class: 'panel', 'aria-labelledby': id, 'data-comparator': comparator },
		el('h2', { id }, setName(comparator)),
		el('p', { class: 'muted' }, 'Comparator ', el('code', {}, comparator)),
		groups.length ? groups.map(groupSection)
			: el('p', { class: 'state state-empty' }, 'No evaluations in this set yet.'));
}

function plottedGroups(data) {
	const groups = [];
	for (const entry of data.comparators) {
		for (const group of entry.groups) {
			if (group.metric === 'ppl')
				groups.push({ comparator: entry.comparator, group });
		}
	}
	return groups;
}

// Builds uPlot's aligned data: one x array sorted by parameter count, one y array per
// family with null where a point belongs to another family, and one constant line per
// group median. Each included row carries its version's parameter count and family.
function plotData(data) {
	const points = [];
	const medians = [];
	for (const { comparator, group } of plottedGroups(data)) {
		for (const row of group.included) {
			if (row.parameters > 0)
				points.push({ x: row.parameters, y: row.ratio, family: row.family || 'other' });
		}
		if (typeof group.median === 'number')
			medians.push({ comparator, value: group.median,
				label: `${setName(comparator)} median ${formatNumber(group.median)}` });
	}
	points.sort((a, b) => a.x - b.x);
	const families = [...new Set(points.map((p) => p.family))].sort();
	const xs = points.map((p) => p.x);
	const columns = [xs,
		...families.map((f) => points.map((p) => (p.family === f ? p.y : null))),
		...medians.map((m) => xs.map(() => m.value))];
	return { points, families, medians, columns };
}

// Ticks at 1, 2 and 5 times each power of ten between min and max, so a range narrower
// than a decade still gets labels.
function logTicks(u, axisIndex, min, max) {
	const ticks = [];
	for (let decade = 10 ** Math.floor(Math.log10(min)); decade <= max; decade *= 10) {
		for (const step of [1, 2, 5]) {
			const tick = step * decade;
			if (tick >= min && tick <= max)
				ticks.push(tick);
		}
	}
	return ticks;
}

function drawPlot(figure, target, plot) {
	const series = [{ label: 'parameters' },
		...plot.families.map((family) => {
			const colour = FAMILY_COLOURS[family] || FAMILY_COLOURS.other;
			return { label: family, stroke: colour, paths: () => null,
				points: { show: true, size: 10, fill: colour, stroke: colour } };
		}),
		...plot.medians.map((m) => ({ label: m.label, stroke: MEDIAN_COLOURS[m.comparator] || '#57606a',
			dash: [6, 4], width: 1.5, points: { show: false }, spanGaps: true }))];
	const width = Math.max(300, Math.min(target.clientWidth || 800, 900));
	const options = {
		width, height: 340, series,
		scales: { x: { time: false, distr: 3 } },
		axes: [
			{ label: 'Parameters (log scale)', splits: logTicks, filter: (u, ticks) => ticks,
				values: (u, ticks) => ticks.map(formatShortCount) },
			{ label: 'PPL ratio, pack / original', values: (u, ticks) => ticks.map((t) => t.toFixed(3)), size: 60 },
		],
		legend: { live: false },
		cursor: { show: false },
	};
	// uPlot draws into `target`; it reads the numbers only, so no markup comes from the data.
	new window.uPlot(options, plot.columns, target);
	figure.dataset.points = String(plot.points.length);
}

function renderPlot(data, figure, target) {
	if (typeof window.uPlot !== 'function') {
		showState(target, 'error', 'The plot library did not load (/vendor/uPlot.iife.min.js); ' +
			'the tables above hold the same numbers.');
		return;
	}
	const plot = plotData(data);
	if (plot.points.length === 0) {
		showState(target, 'empty', 'No verified perplexity evaluation to plot yet.');
		return;
	}
	target.setAttribute('aria-label', `Scatter plot of ${plot.points.length} perplexity ratios against ` +
		`parameter count on a log scale, coloured by family (${plot.families.join(', ')}), with ` +
		`${plot.medians.length} median line${plot.medians.length === 1 ? '' : 's'}.`);
	drawPlot(figure, target, plot);
}

async function render() {
	let data;
	try {
		data = await api('/api/stats');
	} catch (err) {
		showState(container, 'error', `The statistics could not be loaded: ${err.message}.`,
			el('p', {}, 'Reload the page to try again.'));
		return;
	}

	const byComparator = new Map(data.comparators.map((c) => [c.comparator, c]));
	const order = [...Object.keys(comparators),
		...data.comparators.map((c) => c.comparator).filter((c) => !comparators[c])];
	const target = el('div', { class: 'plot-area', role: 'img',
		'aria-label': 'Scatter plot of ratio against parameter count' });
	const figure = el('figure', { class: 'plot', id: 'plot' },
		el('figcaption', {}, 'Perplexity ratio against parameter count (log scale), one point ' +
			'per included row, coloured by family. Dashed lines are the medians of each set. ' +
			'The panels above list the same rows.'),
		target);
	container.replaceChildren(
		el('div', { class: 'panels' }, order.map((c) => panel(c, byComparator.get(c)))),
		el('h2', {}, 'Perplexity ratio against parameter count'),
		figure);
	renderPlot(data, figure, target);
}

render();
