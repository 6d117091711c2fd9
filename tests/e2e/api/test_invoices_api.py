"""Invoices over HTTP: billed as a test clock advances, documents, corrections, payments."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from accrual.services.tenants import CreatedTenant
from tests.support import assert_problem, auth

CATALOG = {
    "taxes": [{"code": "VAT20", "rate": "20"}],
    "plans": [
        {
            "code": "basic",
            "currency": "EUR",
            "interval": "month",
            "charges": [{"code": "base", "model": "flat", "amount": "31"}],
        }
    ],
}


@pytest.fixture
def billed(client: TestClient, tenant: CreatedTenant) -> tuple[dict[str, str], dict[str, Any]]:
    """A customer on a test clock, billed for January and February: two open invoices."""
    h = auth(tenant.admin_key.secret)
    assert client.post("/v1/catalog/apply", json=CATALOG, headers=h).status_code == 200
    settings = {
        "billing": {"invoice_prefix": "INV-", "payment_terms_days": 30, "seller": {"name": "Seller SAS"}}
    }
    patched = client.patch("/v1/tenant", json=settings, headers=h)
    assert patched.status_code == 200, patched.text
    assert patched.json()["billing"]["invoice_prefix"] == "INV-"
    clock = client.post(
        "/v1/test_clocks", json={"name": "sim", "frozen_time": "2026-01-01T00:00:00Z"}, headers=h
    ).json()["id"]
    customer = client.post(
        "/v1/customers",
        json={
            "external_id": "acme",
            "name": "Acme GmbH",
            "currency": "EUR",
            "tax_rates": ["VAT20"],
            "billing_address": {"line1": "Hauptstr. 1", "city": "Berlin", "country": "DE"},
            "test_clock": clock,
        },
        headers=h,
    ).json()
    created = client.post("/v1/subscriptions", json={"customer": "acme", "plan": "basic"}, headers=h)
    assert created.status_code == 201, created.text
    advanced = client.post(
        f"/v1/test_clocks/{clock}/advance", json={"frozen_time": "2026-02-01T00:00:00Z"}, headers=h
    )
    assert advanced.status_code == 200, advanced.text
    return h, customer


def test_invoices_are_listed_and_read(
    client: TestClient, billed: tuple[dict[str, str], dict[str, Any]]
) -> None:
    h, _ = billed
    listed = client.get("/v1/invoices", headers=h).json()
    assert [(i["number"], i["status"], i["total"], i["due_at"]) for i in listed["data"]] == [
        ("INV-000001", "open", "37.20", "2026-01-31T00:00:00Z"),
        ("INV-000002", "open", "37.20", "2026-03-03T00:00:00Z"),
    ]
    first = client.get(f"/v1/invoices/{listed['data'][0]['id']}", headers=h).json()
    line = first["lines"][0]
    assert (line["kind"], line["amount"], line["tax"], line["taxes"][0]["code"]) == (
        "fee",
        "31.00",
        "6.20",
        "VAT20",
    )
    assert client.get("/v1/invoices", params={"status": "paid"}, headers=h).json()["data"] == []


def test_documents_render(client: TestClient, billed: tuple[dict[str, str], dict[str, Any]]) -> None:
    h, _ = billed
    invoice = client.get("/v1/invoices", headers=h).json()["data"][0]
    pdf = client.get(f"/v1/invoices/{invoice['id']}.pdf", headers=h)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    html = client.get(f"/v1/invoices/{invoice['id']}.html", params={"locale": "de_DE"}, headers=h)
    assert html.status_code == 200
    for text in ("INV-000001", "Seller SAS", "Acme GmbH", "Hauptstr. 1", "31,00\xa0€", "VAT20 20%"):
        assert text in html.text, text


def test_pay_credit_and_balance(client: TestClient, billed: tuple[dict[str, str], dict[str, Any]]) -> None:
    h, customer = billed
    first, second = client.get("/v1/invoices", headers=h).json()["data"]
    paid = client.post(f"/v1/invoices/{first['id']}/payments", json={"method": "bank_transfer"}, headers=h)
    assert paid.status_code == 201, paid.text
    assert (paid.json()["amount"], paid.json()["to_balance"]) == ("37.20", "0.00")
    assert client.get(f"/v1/invoices/{first['id']}", headers=h).json()["status"] == "paid"
    too_much = client.post(
        f"/v1/invoices/{first['id']}/credit_notes", json={"amount": "40.00", "reason": "x"}, headers=h
    )
    assert_problem(too_much, 422, pointer="#/amount")
    note = client.post(
        f"/v1/invoices/{first['id']}/credit_notes",
        json={"lines": [{"line_no": 1, "amount": "12.40"}], "reason": "outage"},
        headers=h,
    )
    assert note.status_code == 201, note.text
    assert (note.json()["number"], note.json()["tax"], note.json()["to_balance"]) == (
        "CN-000001",
        "2.07",
        "12.40",
    )
    balance = client.get(f"/v1/customers/{customer['id']}/balance", headers=h).json()
    assert balance["balances"] == {"EUR": "12.40"}
    notes = client.get(f"/v1/invoices/{first['id']}/credit_notes", headers=h).json()
    assert [n["number"] for n in notes] == ["CN-000001"]
    assert client.get(f"/v1/credit_notes/{notes[0]['id']}.pdf", headers=h).content.startswith(b"%PDF")
    voided = client.post(f"/v1/invoices/{second['id']}/void", headers=h)
    assert voided.json()["status"] == "void"
    again = client.post(f"/v1/invoices/{second['id']}/void", headers=h)
    assert_problem(again, 409)


def test_a_missing_invoice_is_404(client: TestClient, billed: tuple[dict[str, str], dict[str, Any]]) -> None:
    h, _ = billed
    response = client.get("/v1/invoices/00000000-0000-7000-8000-000000000000", headers=h)
    assert_problem(response, 404)


def test_the_ledger_follows_the_invoices(
    client: TestClient, billed: tuple[dict[str, str], dict[str, Any]]
) -> None:
    h, _ = billed
    first, second = client.get("/v1/invoices", headers=h).json()["data"]
    assert client.post(f"/v1/invoices/{first['id']}/payments", json={}, headers=h).status_code == 201
    trial = client.get("/v1/ledger/trial_balance", headers=h)
    assert trial.status_code == 200, trial.text
    body = trial.json()
    assert body["balanced"] is True
    eur = body["currencies"]["EUR"]
    # Two invoices of 31 + 20% VAT; the first paid: the second's 37.20 is still receivable.
    assert (eur["accounts_receivable"], eur["cash"], eur["tax_payable"], eur["deferred_revenue"]) == (
        "37.20",
        "37.20",
        "12.40",
        "62.00",
    )
    before = client.get("/v1/ledger/trial_balance", params={"as_of": "2025-12-31T00:00:00Z"}, headers=h)
    assert before.json()["currencies"] == {}
    naive = client.get("/v1/ledger/trial_balance", params={"as_of": "2026-01-01T00:00:00"}, headers=h)
    assert_problem(naive, 422, parameter="as_of")
    entries = client.get(f"/v1/ledger/invoices/{first['id']}/entries", headers=h).json()
    assert [e["kind"] for e in entries] == ["invoice_finalized", "payment"]
    assert entries[1]["lines"] == [
        {"account": "cash", "currency": "EUR", "amount": "37.20", "invoice_line": None},
        {"account": "accounts_receivable", "currency": "EUR", "amount": "-37.20", "invoice_line": None},
    ]
    missing = client.get("/v1/ledger/invoices/00000000-0000-7000-8000-000000000000/entries", headers=h)
    assert_problem(missing, 404)
    assert second["status"] == "open"
    # The second invoice (net 30 from February 1) is 12 days past due on March 15.
    aging = client.get("/v1/ledger/ar_aging", params={"as_of": "2026-03-15T00:00:00Z"}, headers=h)
    assert aging.status_code == 200, aging.text
    (row,) = aging.json()["customers"]
    assert (row["customer"], row["buckets"]["1_30"], row["total"]) == ("acme", "37.20", "37.20")
    assert aging.json()["totals"]["EUR"]["total"] == eur["accounts_receivable"]
    as_csv = client.get(
        "/v1/ledger/ar_aging", params={"as_of": "2026-03-15T00:00:00Z", "format": "csv"}, headers=h
    )
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text.splitlines()[1] == "EUR,acme,0.00,37.20,0.00,0.00,0.00,37.20"
    assert_problem(client.get("/v1/ledger/ar_aging", params={"format": "xml"}, headers=h), 422)


def test_accounting_months_close_and_reopen(client: TestClient, tenant: CreatedTenant) -> None:
    h = auth(tenant.admin_key.secret)
    closed = client.post("/v1/ledger/periods/2026-01/close", headers=h)
    assert closed.status_code == 200, closed.text
    assert (closed.json()["month"], closed.json()["status"]) == ("2026-01", "closed")
    assert_problem(client.post("/v1/ledger/periods/2026-01/close", headers=h), 409)
    assert_problem(client.post("/v1/ledger/periods/2026-1/close", headers=h), 422)
    assert_problem(client.post("/v1/ledger/periods/2999-01/close", headers=h), 409)
    assert_problem(
        client.post("/v1/ledger/periods/2026-01/reopen", json={}, headers=h), 422, pointer="#/reason"
    )
    reopened = client.post(
        "/v1/ledger/periods/2026-01/reopen", json={"reason": "audit adjustment"}, headers=h
    )
    assert reopened.json()["status"] == "open"
    listed = client.get("/v1/ledger/periods", headers=h).json()
    assert [(p["month"], p["status"], p["reason"]) for p in listed] == [
        ("2026-01", "open", "audit adjustment")
    ]
