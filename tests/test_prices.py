"""core.prices: prices from the offline genai-prices table, batch at half price, unknown said as unknown,
the user's own prices first."""

import pytest

from core.prices import price_of


@pytest.mark.parametrize("model, base_url, batch_, known", [
    ("gpt-4o-mini", None, False, True),
    ("gpt-4o-mini", "https://api.openai.com/v1", True, True),
    ("my-model", "http://127.0.0.1:8000/v1", True, False),
    ("no-such-model-xyz", None, False, False),
])
def test_prices_from_the_table_batch_half_and_unknown_is_unknown(model, base_url, batch_, known):
    p = price_of(model, base_url, batch=batch_)
    assert p.known is known
    if known:
        standard = price_of(model, base_url)
        assert p.input > 0 and p.output > 0
        assert p.input == pytest.approx(standard.input * (0.5 if batch_ else 1))
    else:
        assert p.cost(1000, 1000) is None and "unknown" in p.describe()
    # the user's own prices win, even 0 (a free local model)
    own = price_of(model, base_url, batch=batch_, price_input=0, price_output=0)
    assert own.known and own.cost(10**6, 10**6) == 0


def test_the_price_table_is_read_offline(monkeypatch):
    import socket

    from core import prices

    def no_network(*a, **k):
        raise AssertionError("the price table tried the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    prices._table_price.cache_clear()
    p = prices.price_of("gpt-4.1-mini", batch=True)
    assert p.known and p.source.startswith("genai-prices 0.2.3")
