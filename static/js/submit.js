// The submit page: puts this registry's address into the example commands and adds a
// copy button to each command block.
import { addCopyButton } from './common.js';

const placeholder = 'https://registry.example';

for (const code of document.querySelectorAll('pre code, #origin-example'))
	code.textContent = code.textContent.replaceAll(placeholder, window.location.origin);

for (const block of document.querySelectorAll('.command')) {
	const head = block.querySelector('.command-head');
	addCopyButton(head, block.querySelector('code'), head.textContent.trim());
}
