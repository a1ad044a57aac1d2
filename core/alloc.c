/* Allocation wrappers with a fault-injection hook. jansson allocates through them too, so
 * a test that fails the Nth allocation reaches every allocation libuc causes. */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* Allocations left before failures start; negative means never fail. */
static atomic_long allocations_left = -1;

static int allocation_allowed(void)
{
	long left = atomic_load(&allocations_left);
	if (left < 0)
		return 1;
	if (left == 0)
		return 0;
	atomic_fetch_sub(&allocations_left, 1);
	return 1;
}

void *ucp_malloc(size_t size)
{
	if (!allocation_allowed())
		return NULL;
	return malloc(size ? size : 1);
}

void *ucp_calloc(size_t count, size_t size)
{
	if (!allocation_allowed())
		return NULL;
	if (count == 0 || size == 0)
		count = size = 1;
	return calloc(count, size);
}

void *ucp_realloc(void *ptr, size_t size)
{
	if (!allocation_allowed())
		return NULL;
	return realloc(ptr, size ? size : 1);
}

void ucp_free(void *ptr)
{
	free(ptr);
}

char *ucp_strdup(const char *s)
{
	size_t len = strlen(s) + 1;
	char *copy = ucp_malloc(len);
	if (copy)
		memcpy(copy, s, len);
	return copy;
}

int ucp_mul_size(size_t a, size_t b, size_t *out)
{
	return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}

int ucp_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
	return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

static void *json_alloc(size_t size)
{
	return ucp_malloc(size);
}

/* Routes jansson through the hook once, when the library is loaded. Programs that link
 * libuc share jansson's allocator with it, which is harmless: both end in malloc/free. */
__attribute__((constructor)) static void install_json_allocator(void)
{
	json_set_alloc_funcs(json_alloc, ucp_free);
}

void uc_test_fail_allocations_after(long n)
{
	atomic_store(&allocations_left, n < 0 ? -1 : n);
}
