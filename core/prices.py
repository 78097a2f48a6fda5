"""What a model's tokens cost: the user's own prices, else a maintained price table, else unknown.

The table is the ``genai-prices`` package's bundled snapshot (pinned in requirements.txt; it is
read offline, nothing is fetched at run time). It knows the providers' list prices and their
batch variants (OpenAI's and Anthropic's Batch APIs: half price), so a batch run is estimated at
what it will be billed. A model the table does not know, or any model served from a base URL that
is not a known provider (vLLM, Ollama, llama.cpp on your own machines, a team gateway), has an
*unknown* price unless the user gives one: shown as unknown, never as $0 (set a price of 0 to say
that it is free).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlparse

#: base URLs (host names) that are the provider itself, for the price table's lookup
_PROVIDER_HOSTS = {"api.openai.com": "openai", "api.anthropic.com": "anthropic", "api.groq.com": "groq",
                   "api.together.xyz": "together", "api.mistral.ai": "mistral", "api.deepseek.com": "deepseek",
                   "openrouter.ai": "openrouter", "generativelanguage.googleapis.com": "google"}


@dataclass(frozen=True)
class Price:
    """USD per million tokens; None when unknown. ``source`` says where the figure comes from."""

    input: float | None
    output: float | None
    source: str  # "your prices", "genai-prices <version> (<provider>, batch)", "unknown: <why>"
    batch: bool = False

    @property
    def known(self) -> bool:
        return self.input is not None and self.output is not None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        if not self.known:
            return None
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6

    def describe(self) -> str:
        if not self.known:
            return f"price unknown ({self.source.removeprefix('unknown: ')})"
        return f"${self.input:g} / ${self.output:g} per million input / output tokens ({self.source})"


def provider_for(base_url: str | None) -> str | None:
    """The price table's provider id for a base URL (None: OpenAI's default), or None when the
    URL is not a known provider's (a self-hosted server, a gateway)."""
    if not base_url:
        return "openai"
    host = (urlparse(base_url).hostname or "").lower()
    return _PROVIDER_HOSTS.get(host)


def price_of(model: str, base_url: str | None = None, *, batch: bool = False, price_input: float | None = None,
             price_output: float | None = None) -> Price:
    """The price of ``model`` at ``base_url``: the user's own (both given) first, else the table's
    (its batch variant when ``batch``), else unknown."""
    if price_input is not None and price_output is not None:
        return Price(float(price_input), float(price_output), "your prices", batch)
    provider = provider_for(base_url)
    if provider is None:
        return Price(None, None, f"unknown: {urlparse(base_url or '').hostname or base_url} is not a known "
                                 "provider; give your own prices", batch)
    return _table_price(model, provider, batch)


@lru_cache(maxsize=256)
def _table_price(model: str, provider: str, batch: bool) -> Price:
    try:
        from genai_prices import Usage, calc_price  # imported on first use: ~0.6 s
        import genai_prices
    except ImportError:  # pragma: no cover - pinned in requirements.txt
        return Price(None, None, "unknown: the genai-prices package is not installed", batch)
    version = getattr(genai_prices, "__version__", "")
    try:
        per_m = calc_price(Usage(input_tokens=1_000_000, output_tokens=1_000_000), model, provider_id=provider,
                           price_context={"processing": "batch"} if batch else None)
        standard = per_m
        if batch:
            standard = calc_price(Usage(input_tokens=1_000_000, output_tokens=1_000_000), model, provider_id=provider)
    except LookupError:
        return Price(None, None, f"unknown: {model} is not in the price table ({provider})", batch)
    if batch and (per_m.input_price, per_m.output_price) == (standard.input_price, standard.output_price):
        note = "no batch discount listed"
    else:
        note = "batch" if batch else "standard"
    return Price(float(per_m.input_price), float(per_m.output_price),
                 f"genai-prices {version} ({provider}, {note})".replace("  ", " "), batch)


def fmt_cost(value: float | None, *, known: bool = True, digits: int = 4) -> str:
    """A cost for people: ``$1.2345``, or ``unknown`` (never $0 for a price nobody knows)."""
    if value is None or not known:
        return "unknown"
    return f"${value:,.{digits}f}"
