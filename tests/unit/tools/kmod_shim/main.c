/* Runs pool_selftest() (kmod/selftest.c) in userspace; exit status 0 when it passes. */
#include "shim.h"
#include "selftest.h"
int main(void)
{
	int r = pool_selftest();
	printf("pool_selftest() = %d\n", r);
	return r != 0;
}
