// The catalog page: a table of packs from GET /api/packs. Filters, sort and the page
// cursor live in the query string, so a view can be shared by its URL.
import { api, badge, comparatorLabel, el, formatNumber, formatShortCount, formatCount,
	showState, timeElement } from './common.js';

const PAGE_SIZE = 25;
const FILTERS = ['q', 'family', 'comparator'];

// Columns the API can sort by, with the `sort` value of each. Rows without a value in the
// sorted column (no verified version, no evaluation) come last in both directions.
const SORTABLE = { pack: 'slug', family: 'family', parameters: 'parameters', bpw: 'bits_per_weight',
	ratio: 'ratio', added: 'created', updated: 'updated' };

function readQuery() {
	const params = new URLSearchParams(window.location.search);
	const query = {};
	for (const name of [...FILTERS, 'sort', 'cursor', 'limit'])
		query[name] = params.get(name) || '';
	return query;
}

// A catalog URL with `changes` applied to the current query; empty values are dropped.
function catalogUrl(query, changes) {
	const params = new URLSearchParams();
	for (const [name, value] of Object.entries({ ...query, ...changes })) {
		if (value)
			params.set(name, value);
	}
	const text = params.toString();
	return text ? `/?${text}` : '/';
}

function fillForm(query) {
	for (const name of FILTERS)
		document.getElementById(name).value = query[name];
	document.getElementById('sort').value = query.sort === 'slug' ? '' : query.sort;
	// Filters apply on submit, not on change, because arrow keys on a closed select change
	// its value. Empty fields are left out of the URL, so a shared view holds only what it uses.
	document.getElementById('filters').addEventListener('submit', (event) => {
		event.preventDefault();
		const changes = { cursor: '' };
		for (const name of [...FILTERS, 'sort'])
			changes[name] = document.getElementById(name).value.trim();
		window.location.assign(catalogUrl({ limit: query.limit }, changes));
	});
}

function sortHeader(query, column, label) {
	const key = SORTABLE[column];
	if (!key)
		return el('th', { scope: 'col' }, label);
	const current = query.sort || 'slug';
	const ascending = current === key;
	const descending = current === `-${key}`;
	const next = ascending ? `-${key}` : key;
	let arrow = '';
	let ariaSort = null;
	if (ascending) {
		arrow = ' ▲';
		ariaSort = 'ascending';
	} else if (descending) {
		arrow = ' ▼';
		ariaSort = 'descending';
	}
	return el('th', { scope: 'col', 'aria-sort': ariaSort },
		el('a', { href: catalogUrl(query, { sort: next === 'slug' ? '' : next, cursor: '' }),
			'aria-label': `${label}, sort ${ascending ? 'descending' : 'ascending'}` },
		label, el('span', { 'aria-hidden': 'true' }, arrow)));
}

// The ratio of the latest version's newest evaluation, marked with its comparator.
function ratioCell(latest) {
	if (!latest || typeof latest.ratio !== 'number')
		return el('td', { 'data-label': 'PPL ratio' }, el('span', { class: 'muted' }, 'not measured'));
	const comparator = latest.comparator;
	return el('td', { 'data-label': latest.metric === 'ppl' ? 'PPL ratio' : 'Ratio', class: 'num' },
		el('span', {}, el('span', { class: 'ratio' }, formatNumber(latest.ratio)), ' ',
			el('span', { class: `tag tag-${comparator}`, title: `comparator: ${comparator}` },
				comparatorLabel(comparator))));
}

function packRow(pack) {
	const latest = pack.latest;
	return el('tr', {},
		el('th', { scope: 'row', 'data-label': 'Pack' },
			el('a', { href: `/packs/${encodeURIComponent(pack.slug)}` }, pack.slug),
			pack.name && pack.name !== pack.slug ? el('span', { class: 'subtle' }, pack.name) : null),
		el('td', { 'data-label': 'Family' }, pack.family || '–'),
		el('td', { 'data-label': 'Parameters', class: 'num' },
			latest ? el('span', { title: formatCount(latest.parameters) }, formatShortCount(latest.parameters)) : '–'),
		el('td', { 'data-label': 'Bits per weight', class: 'num' },
			latest ? formatNumber(latest.bits_per_weight, 2) : '–'),
		ratioCell(latest),
		el('td', { 'data-label': 'Verification' }, badge(pack.status || 'pending')),
		el('td', { 'data-label': 'Added' }, timeElement(pack.created_at)),
		el('td', { 'data-label': 'Last update' }, timeElement(pack.updated_at)));
}

function pager(query, page) {
	const links = [];
	if (query.cursor)
		links.push(el('a', { href: catalogUrl(query, { cursor: '' }), rel: 'first' }, 'First page'));
	if (page.next_cursor)
		links.push(el('a', { href: catalogUrl(query, { cursor: page.next_cursor }), rel: 'next' },
			'Next page'));
	return links.length ? el('nav', { class: 'pager', 'aria-label': 'Pages' }, links) : null;
}

async function render() {
	const query = readQuery();
	fillForm(query);
	const container = document.getElementById('catalog');

	// ?limit= changes the page size; the API rejects values outside 1 to 500.
	const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
	for (const name of [...FILTERS, 'sort', 'cursor', 'limit']) {
		if (query[name])
			params.set(name, query[name]);
	}
	let page;
	try {
		page = await api(`/api/packs?${params}`);
	} catch (err) {
		showState(container, 'error', `The catalog could not be loaded: ${err.message}.`,
			el('p', {}, 'Reload the page to try again.'));
		return;
	}

	const filtered = FILTERS.some((name) => query[name]);
	if (page.packs.length === 0) {
		if (filtered || query.cursor)
			showState(container, 'empty', 'No packs match these filters.',
				el('p', {}, el('a', { href: '/' }, 'Show all packs')));
		else
			showState(container, 'empty', 'The registry has no packs yet.',
				el('p', {}, el('a', { href: '/submit' }, 'Publish the first one')));
		return;
	}

	const table = el('table', { class: 'catalog' },
		el('caption', {}, `Packs ${query.cursor ? '(continued) ' : ''}sorted by `,
			describeSort(query.sort)),
		el('thead', {}, el('tr', {},
			sortHeader(query, 'pack', 'Pack'),
			sortHeader(query, 'family', 'Family'),
			sortHeader(query, 'parameters', 'Parameters'),
			sortHeader(query, 'bpw', 'Bits per weight'),
			sortHeader(query, 'ratio', 'PPL ratio'),
			sortHeader(query, 'verification', 'Verification'),
			sortHeader(query, 'added', 'Added'),
			sortHeader(query, 'updated', 'Last update'))),
		el('tbody', {}, page.packs.map(packRow)));
	container.replaceChildren(
		el('p', { class: 'count', role: 'status' },
			`${page.packs.length} pack${page.packs.length === 1 ? '' : 's'} on this page`),
		el('div', { class: 'table-scroll' }, table),
		el('p', { class: 'hint' }, 'PPL ratio is the perplexity of the pack divided by that of ' +
			'the original weights (1.0 means no loss). Ratios are comparable only within one ' +
			'comparator; see ', el('a', { href: '/stats' }, 'Statistics'), '.'),
		pager(query, page) || '');
}

function describeSort(sort) {
	const names = { slug: 'slug', family: 'family', created: 'date added', updated: 'last update',
		parameters: 'parameter count', bits_per_weight: 'bits per weight', ratio: 'ratio' };
	const key = (sort || 'slug').replace(/^-/, '');
	return `${names[key] || key}, ${sort && sort.startsWith('-') ? 'descending' : 'ascending'}`;
}

render();
