import collections
import pytest
from hypothesis.stateful import run_state_machine_as_test
from tests.trading import test_ledger_state_machine as m

@pytest.mark.django_db(transaction=True)
def test_stats(settings):
    settings.ACCOUNT_STARTING_CASH = "5000.00"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    c = collections.Counter()
    m.event = lambda s: c.update([s])
    orig_place = m.LedgerMachine.place
    def place(self, account, request):
        r = orig_place(self, account, request)
        if r is not None: c.update([f"placed {request.side} {request.type} -> {r.status}"])
        return r
    m.LedgerMachine.place = place
    orig = m.LedgerMachine.open_orders
    def open_orders(self):
        r = orig(self)
        c.update([f"open orders seen: {min(len(r),3)}"])
        return r
    m.LedgerMachine.open_orders = open_orders
    from hypothesis import settings as hs; run_state_machine_as_test(m.LedgerMachine, settings=hs(m._machine_settings(), max_examples=100))
    for k, v in sorted(c.items()):
        print(f"{v:6d} {k}")
