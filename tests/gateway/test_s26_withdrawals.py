"""Withdrawals for the operator through a real server (session 26): `admin.withdrawals`
gives when each was requested, and a confirm or void of a finished withdrawal says whether
it was confirmed or voided, changing nothing, also after a restart (journal replay).

The findings: the list gave no request time (the ledger kept none), and a second confirm or
void said only `UNKNOWN_WITHDRAWAL`, leaving the operator to guess what had happened.
"""

from pathlib import Path

from tests.conftest import start_venue
from tests.gateway.test_s25_withdrawals import refused, two_withdrawals
from tests.gateway.test_server_admin import ledger_view
from tests.gateway.test_server_recovery import run, stop


def test_the_list_gives_request_times_and_a_finished_id_says_how_it_ended(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        venue = await start_venue(data_dir)
        admin = await venue.client("admin")
        alphas, betas = await two_withdrawals(admin)
        listed = (await admin.request("admin.withdrawals", {}))["withdrawals"]
        assert [line["withdrawal_id"] for line in listed] == [alphas, betas]
        ledger = venue.server.ledger  # the sequencer's stamps of the two requests, in µs
        stamps = [ledger.withdrawals[w].requested_at_us for w in (alphas, betas)]
        assert [line["requested_at"] for line in listed] == stamps
        assert 0 < stamps[0] <= stamps[1]
        await admin.request("admin.confirm_withdrawal", {"withdrawal_id": alphas})
        await admin.request("admin.void_withdrawal", {"withdrawal_id": betas})
        before = ledger_view(venue)
        for method in ("admin.confirm_withdrawal", "admin.void_withdrawal"):
            error = await refused(admin, method, {"withdrawal_id": alphas})
            assert error["name"] == "WITHDRAWAL_ALREADY_CONFIRMED" and error["code"] == 7010
            assert f"withdrawal {alphas} was confirmed (its tokens burned) at" in error["msg"]
            error = await refused(admin, method, {"withdrawal_id": betas})
            assert error["name"] == "WITHDRAWAL_ALREADY_VOIDED" and error["code"] == 7011
            assert f"withdrawal {betas} was voided (its hold released) at" in error["msg"]
        assert ledger_view(venue) == before
        error = await refused(admin, "admin.void_withdrawal", {"withdrawal_id": 99})
        assert error["name"] == "UNKNOWN_WITHDRAWAL"
        await stop(venue)
        restarted = await start_venue(data_dir)  # replayed from the journal
        admin = await restarted.client("admin")
        error = await refused(admin, "admin.confirm_withdrawal", {"withdrawal_id": betas})
        assert error["name"] == "WITHDRAWAL_ALREADY_VOIDED"
        await stop(restarted)

    run(scenario)
