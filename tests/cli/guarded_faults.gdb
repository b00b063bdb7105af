# Runs the engine to the end, recording every SIGSEGV: the address and the faulting frames, then opens
# the one page (read|write) and continues. A page opened this way stays open until the guarded backend
# closes every region at the end of its next op, so a second access to the same page before that op is
# not recorded: the list names the first host code to touch each page, not every access.
set pagination off
set print frame-arguments none
set print entry-values no
handle SIGSEGV stop print nopass
run
while 1
  printf "=== fault at %p\n", $_siginfo._sifields._sigfault.si_addr
  bt 3
  call (int)mprotect((void *)((unsigned long)$_siginfo._sifields._sigfault.si_addr & ~4095UL), 4096, 3)
  continue
end
