"""One EAL and one set of fast-path tables per test process (EAL starts
once per process): the classifier's and the installer's tests share them,
each with prefixes and indexes of its own."""
import threading

import pytest

from kni_gw.dataplane import ffi, fib_create, lib


@pytest.fixture(scope="session")
def fib_tables():
    rc = []
    argv = [ffi.new("char[]", a) for a in (b"kni-gw-test", b"--no-huge", b"-m", b"256", b"--no-shconf",
                                          b"--no-pci", b"--log-level=warning")]
    # EAL pins the thread that starts it: a thread of its own
    t = threading.Thread(target=lambda: rc.append(lib.kg_eal_init(len(argv), argv + [ffi.NULL])))
    t.start()
    t.join()
    assert rc == [0], "EAL initialisation failed for the unit tests"
    fib_create(4096, 256, 4096, 1024)
    yield
