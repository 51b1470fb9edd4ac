"""Pending withdrawals for the operator, through a real server: confirming or voiding only
the withdrawal expected (`account`, `asset`, `amount` on `admin.confirm_withdrawal` and
`admin.void_withdrawal`), and the read of what is pending (`admin.withdrawals`).

The finding (session 25): an operator confirmed or voided a withdrawal by its bare id, so a
mistyped id burned another account's withdrawal, irreversibly; and nothing listed the
pending withdrawals to check an id against.
"""

from pathlib import Path
from typing import Any

from client.sdk import VenueClient
from tests.conftest import Venue, start_venue
from tests.gateway.test_server_admin import ledger_view, refusal
from tests.gateway.test_server_recovery import run, stop

ALPHA, BETA = 1, 2  # the accounts of the demo keys "alpha" and "beta"


async def two_withdrawals(admin: VenueClient) -> tuple[int, int]:
    """Alpha withdraws 100 USD, beta 50 USD: their ids."""
    ids = []
    for account, amount in ((ALPHA, "100"), (BETA, "50")):
        request = {"account": account, "asset": "USD", "amount": amount}
        ids.append((await admin.request("admin.withdraw", request))["withdrawal_id"])
    return ids[0], ids[1]


async def refused(admin: VenueClient, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """The error `method` is answered with (fails if it is not refused)."""
    response = await admin.request_raw(method, params)
    assert response["status"] != 200, f"{method} was not refused: {response}"
    error: dict[str, Any] = response["error"]
    return error


def test_a_mistyped_id_is_refused_naming_the_withdrawal_and_nothing_changes(
    run_venue: Any,
) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        alphas, betas = await two_withdrawals(admin)
        before = ledger_view(venue)
        for method in ("admin.confirm_withdrawal", "admin.void_withdrawal"):
            # beta's id, typed where alpha's was meant
            for expected in (
                {"account": ALPHA},
                {"asset": "AAPLx"},
                {"asset": "USD", "amount": "100"},
                {"account": ALPHA, "asset": "USD", "amount": "100"},
            ):
                error = await refused(admin, method, {"withdrawal_id": betas} | expected)
                assert error["name"] == "BAD_PARAM", error
                assert f"withdrawal {betas} is account 2's 50.000000 USD" in error["msg"]
                assert ledger_view(venue) == before
        # the one expected is done
        expected = {"account": ALPHA, "asset": "USD", "amount": "100.00"}
        params = {"withdrawal_id": alphas} | expected
        assert "seq" in await admin.request("admin.confirm_withdrawal", params)
        assert alphas not in venue.server.ledger.withdrawals
        params = {"withdrawal_id": betas, "account": BETA}
        assert "seq" in await admin.request("admin.void_withdrawal", params)
        assert not venue.server.ledger.withdrawals

    run_venue(scenario)


def test_malformed_expectations_are_refused_and_change_nothing(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        _, betas = await two_withdrawals(admin)
        before = ledger_view(venue)
        for params, name in (
            ({"amount": "50"}, "MISSING_PARAM"),  # an amount's decimals are its asset's
            ({"asset": "NOPE"}, "UNKNOWN_ASSET"),
            ({"asset": "NOPE", "amount": "50"}, "UNKNOWN_ASSET"),
            ({"asset": "USD", "amount": "0"}, "BAD_PARAM"),
            ({"asset": "USD", "amount": "50.0000001"}, "BAD_PRECISION"),
            ({"account": 0}, "BAD_PARAM"),
        ):
            for method in ("admin.confirm_withdrawal", "admin.void_withdrawal"):
                request = {"withdrawal_id": betas} | params
                assert await refusal(admin, method, request) == name, (method, params)
        assert ledger_view(venue) == before
        unknown = {"withdrawal_id": 999, "account": BETA}
        assert await refusal(admin, "admin.confirm_withdrawal", unknown) == "UNKNOWN_WITHDRAWAL"

    run_venue(scenario)


def test_a_confirm_with_expectations_sent_again_under_its_id_is_a_repeat(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        alphas, _ = await two_withdrawals(admin)
        params = {"withdrawal_id": alphas, "account": ALPHA, "cl_op_id": "confirm-1"}
        first = await admin.request("admin.confirm_withdrawal", params)
        again = await admin.request("admin.confirm_withdrawal", params)
        assert "repeated" not in first and again["repeated"] is True
        other = params | {"account": BETA}  # the same id asking otherwise
        assert await refusal(admin, "admin.confirm_withdrawal", other) == "CL_OP_ID_REUSED"

    run_venue(scenario)


def test_the_operator_lists_pending_withdrawals_by_page_and_account(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        assert await admin.request("admin.withdrawals", {}) == {
            "withdrawals": [],
            "next_after_withdrawal_id": None,
        }
        alphas, betas = await two_withdrawals(admin)
        listed = await admin.request("admin.withdrawals", {})
        times = [line.pop("requested_at") for line in listed["withdrawals"]]  # session 26
        assert all(isinstance(at, int) and at > 0 for at in times) and times == sorted(times)
        assert listed == {
            "withdrawals": [
                {"withdrawal_id": alphas, "account": ALPHA, "asset": "USD", "amount": "100.000000"},
                {"withdrawal_id": betas, "account": BETA, "asset": "USD", "amount": "50.000000"},
            ],
            "next_after_withdrawal_id": None,
        }
        page = await admin.request("admin.withdrawals", {"limit": 1})
        assert [w["withdrawal_id"] for w in page["withdrawals"]] == [alphas]
        assert page["next_after_withdrawal_id"] == alphas
        rest = {"limit": 1, "after_withdrawal_id": alphas}
        page = await admin.request("admin.withdrawals", rest)
        assert [w["withdrawal_id"] for w in page["withdrawals"]] == [betas]
        assert page["next_after_withdrawal_id"] is None
        betas_only = await admin.request("admin.withdrawals", {"account": BETA})
        assert [w["withdrawal_id"] for w in betas_only["withdrawals"]] == [betas]
        assert await refusal(admin, "admin.withdrawals", {"account": 77}) == "UNKNOWN_ACCOUNT"
        assert await refusal(admin, "admin.withdrawals", {"limit": 1001}) == "BAD_PARAM"
        assert await refusal(admin, "admin.withdrawals", {"cl_op_id": "x"}) == "BAD_PARAM"
        await admin.request("admin.confirm_withdrawal", {"withdrawal_id": alphas})
        left = await admin.request("admin.withdrawals", {})
        assert [w["withdrawal_id"] for w in left["withdrawals"]] == [betas]

    run_venue(scenario)


def test_a_trader_cannot_list_withdrawals(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        await two_withdrawals(admin)
        for who in ("alpha", "beta"):
            trader = await venue.client(who)
            for params in ({}, {"account": ALPHA}):
                assert await refusal(trader, "admin.withdrawals", params) == "PERMISSION_DENIED"
        public = await venue.client(endpoint="public")
        assert await refusal(public, "admin.withdrawals", {}) == "NOT_AUTHENTICATED"

    run_venue(scenario)


def test_expectations_and_their_ids_survive_a_restart(tmp_path: Path) -> None:
    """Journaled with the expectations: a restart replays the refusal and the confirm as they
    ran (same state), lists what is still pending, and answers the confirm's retry as a
    repeat."""
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        first = await start_venue(data_dir)
        admin = await first.client("admin")
        alphas, betas = await two_withdrawals(admin)
        mistyped = {"withdrawal_id": betas, "account": ALPHA, "cl_op_id": "confirm-1"}
        assert await refusal(admin, "admin.confirm_withdrawal", mistyped) == "BAD_PARAM"
        meant = mistyped | {"withdrawal_id": alphas}
        await admin.request("admin.confirm_withdrawal", meant)
        state = first.server.venue.state_hash()
        await stop(first)

        second = await start_venue(data_dir)
        try:
            assert second.server.venue.state_hash() == state
            admin = await second.client("admin")
            again = await admin.request("admin.confirm_withdrawal", meant)
            assert again["repeated"] is True
            listed = await admin.request("admin.withdrawals", {})
            assert [w["withdrawal_id"] for w in listed["withdrawals"]] == [betas]
        finally:
            await stop(second)

    run(scenario)
