/* CPU probe and choice of the reconstruction path. The probe runs once per process; the
 * choice comes from UC_ISA when set, else the fastest available path, and tests may force
 * another path later. */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"

#ifdef UC_HAVE_X86_KERNELS
#include <cpuid.h>
#endif

static const char *const isa_names[UC_ISA_COUNT] = {
	[UC_ISA_SCALAR] = "scalar",
	[UC_ISA_AVX2] = "avx2",
	[UC_ISA_AVX512] = "avx512",
	[UC_ISA_NEON] = "neon",
};

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static int isa_supported[UC_ISA_COUNT];

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static uc_error init_error;        /* written once inside init_once, read only afterwards */
static atomic_int active_isa = UC_ISA_SCALAR;
static atomic_int init_failed;     /* 1 while a UC_ISA failure is in effect (no path forced since) */

#ifdef UC_HAVE_X86_KERNELS
/* Returns the XCR0 register: which register states the operating system saves. */
static uint64_t read_xcr0(void)
{
	uint32_t eax, edx;
	__asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
	return ((uint64_t)edx << 32) | eax;
}

static void probe_x86(void)
{
	unsigned eax, ebx, ecx, edx;
	if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
		return;
	int fma = (ecx >> 12) & 1;  /* the x86 kernels multiply and subtract with one FMA */
	int osxsave = (ecx >> 27) & 1;
	int avx = (ecx >> 28) & 1;
	int f16c = (ecx >> 29) & 1;
	if (!fma || !osxsave || !avx || !f16c)
		return;

	uint64_t xcr0 = read_xcr0();
	int ymm_saved = (xcr0 & 0x6) == 0x6;            /* SSE and AVX state */
	int zmm_saved = (xcr0 & 0xE6) == 0xE6;          /* plus opmask, ZMM0-15 upper, ZMM16-31 */
	if (!ymm_saved || !__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx))
		return;

	int avx2 = (ebx >> 5) & 1;
	int avx512f = (ebx >> 16) & 1;
	int avx512bw = (ebx >> 30) & 1;
	int avx512vl = (ebx >> 31) & 1;
	isa_supported[UC_ISA_AVX2] = avx2;
	isa_supported[UC_ISA_AVX512] = avx2 && zmm_saved && avx512f && avx512bw && avx512vl;
}
#endif

static void probe_cpu(void)
{
	isa_supported[UC_ISA_SCALAR] = 1;
#ifdef UC_HAVE_X86_KERNELS
	probe_x86();
#endif
#ifdef UC_HAVE_NEON_KERNELS
	isa_supported[UC_ISA_NEON] = 1;  /* Advanced SIMD is mandatory on AArch64 */
#endif
}

const char *uc_isa_name(uc_isa isa)
{
	if ((unsigned)isa >= UC_ISA_COUNT)
		return NULL;
	return isa_names[isa];
}

int uc_isa_available(uc_isa isa)
{
	if ((unsigned)isa >= UC_ISA_COUNT)
		return 0;
	pthread_once(&probe_once, probe_cpu);
	return isa_supported[isa] && ucp_isa_kernel(isa) != NULL;
}

/* Writes the available path names, comma-separated, for error messages. */
static void list_available(char *buf, size_t size)
{
	buf[0] = '\0';
	for (int i = 0; i < UC_ISA_COUNT; i++) {
		if (!uc_isa_available((uc_isa)i))
			continue;
		size_t used = strlen(buf);
		snprintf(buf + used, size - used, "%s%s", used ? ", " : "", isa_names[i]);
	}
}

static void choose_isa(void)
{
	uc_error_clear(&init_error);
	const char *requested = getenv("UC_ISA");
	if (!requested || !*requested) {
		uc_isa best = UC_ISA_SCALAR;
		const uc_isa preference[] = { UC_ISA_AVX512, UC_ISA_AVX2, UC_ISA_NEON };
		for (size_t i = 0; i < sizeof preference / sizeof preference[0]; i++) {
			if (uc_isa_available(preference[i])) {
				best = preference[i];
				break;
			}
		}
		atomic_store(&active_isa, best);
		return;
	}

	char available[64];
	list_available(available, sizeof available);
	for (int i = 0; i < UC_ISA_COUNT; i++) {
		if (strcmp(requested, isa_names[i]) != 0)
			continue;
		if (uc_isa_available((uc_isa)i)) {
			atomic_store(&active_isa, i);
			return;
		}
		ucp_fail(&init_error, UC_ERR_ISA,
			 "UC_ISA=%s: this CPU, OS or build does not support that path; available: %s",
			 requested, available);
		atomic_store(&init_failed, 1);
		return;
	}
	ucp_fail(&init_error, UC_ERR_ISA,
		 "UC_ISA=%.64s: unknown path; use one of scalar, avx2, avx512, neon (available here: %s)",
		 requested, available);
	atomic_store(&init_failed, 1);
}

uc_status uc_isa_init(uc_error *err)
{
	pthread_once(&init_once, choose_isa);
	if (!atomic_load(&init_failed))
		return UC_OK;
	if (err)
		*err = init_error;
	return UC_ERR_ISA;
}

uc_isa uc_isa_active(void)
{
	if (uc_isa_init(NULL) != UC_OK)
		return UC_ISA_SCALAR;
	return (uc_isa)atomic_load(&active_isa);
}

uc_status uc_isa_force(uc_isa isa, uc_error *err)
{
	pthread_once(&init_once, choose_isa);
	if ((unsigned)isa >= UC_ISA_COUNT)
		return ucp_fail(err, UC_ERR_ISA, "instruction-set path %d is unknown", (int)isa);
	if (!uc_isa_available(isa)) {
		char available[64];
		list_available(available, sizeof available);
		return ucp_fail(err, UC_ERR_ISA,
				"instruction-set path %s is not available on this CPU, OS or build; available: %s",
				isa_names[isa], available);
	}
	atomic_store(&active_isa, isa);
	atomic_store(&init_failed, 0);  /* an explicit choice replaces a failed UC_ISA */
	return UC_OK;
}

ucp_uc5_kernel ucp_isa_kernel(uc_isa isa)
{
	switch (isa) {
	case UC_ISA_SCALAR:
		return ucp_uc5_decode_scalar;
#ifdef UC_HAVE_X86_KERNELS
	case UC_ISA_AVX2:
		return ucp_uc5_decode_avx2;
	case UC_ISA_AVX512:
		return ucp_uc5_decode_avx512;
#endif
#ifdef UC_HAVE_NEON_KERNELS
	case UC_ISA_NEON:
		return ucp_uc5_decode_neon;
#endif
	default:
		return NULL;
	}
}

uc_status ucp_isa_active_kernel(ucp_uc5_kernel *kernel, uc_error *err)
{
	uc_status rc = uc_isa_init(err);
	if (rc != UC_OK)
		return rc;
	*kernel = ucp_isa_kernel((uc_isa)atomic_load(&active_isa));
	return UC_OK;
}
