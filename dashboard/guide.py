"""The method in the app (issue 17): a short "how to read this" per page and the attribute catalogue.

The texts are ours (not data), so they are markdown as written; the catalogue's definitions come
from core/catalogue.py (its data files), so a team that edits the catalogue sees its own words here.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import catalogue

HOW_TO_READ = {
    "overview": """
**What this tool does.** It explains *why* a judge (people, or an LLM used as a judge) prefers one response
over another, in terms of 29 interpretable attributes (clear, harmless, lengthy, admits limits...), following
"Dissecting Human and LLM Preferences" (Li et al., ACL 2024). For each judge and scenario it fits a Bayesian
logistic regression of the judge's choices on which response is better on each attribute.

**Where to start.** *Profiles* shows what each judge rewards and dislikes; *Similarity* which judges prefer
alike; *Judges* how often they agree (read against chance); *Samples* the pairs behind any number; the
*Simulator* how far a win rate moves when a model shows or hides an attribute.

**This page.** What is stored: datasets, samples per scenario group, judges and their labels, and the
agreement between every two judges on the samples they share (the share of the same choice; 50% is what two
coin flips would reach on average).
""",
    "profiles": """
**Each bar** is 100·sigmoid(weight): the probability that the judge prefers the response that is better on
this attribute alone, all else equal. **50% (dashed line)** means the judge ignores the attribute; above 50%
it rewards it, below it dislikes it. **Whiskers** are the 94% credible interval: a whisker crossing 50% means
the data cannot tell the direction. Weights are fitted jointly, so each is net of the other attributes.

**Scope**: the samples the profile was fitted on (a scenario group, a query case, or all). **Held-out
accuracy** is how often the profile predicts the judge's choice on samples it was not fitted on; read it
beside its baselines. Hover a bar for the attribute's definition; the catalogue below says how each one is
compared.
""",
    "similarity": """
**Similarity** of two judges is the Pearson correlation of their attribute weights (1: they reward and
dislike the same things in the same proportions; 0: unrelated; negative: opposite tastes), averaged over the
scope's groups as in the paper. It says nothing about how *often* they agree on a sample (that is the
Judges page). Click a cell to put the two profiles side by side on one scale.
""",
    "judges": """
**Agreement** is the share of shared samples on which two judges made the same choice. Read it against
**chance**: two judges that choose independently agree by chance at the level their choice frequencies give,
and **Cohen's kappa** is agreement above that (0: no better than chance; 1: always agree). **Position
consistency** is the share of samples judged in both orders where the judge picked the same response both
times (a judge that always picks the first slot scores 0).
""",
    "samples": """
Each row is one pair: a query and two responses, with each judge's choice. The comparison features are
+1 when response A is better on an attribute, -1 when B is, 0 when equal (see the catalogue for each
attribute's rule: *relevant*, for instance, only tells zero from non-zero, so ratings 3 and 2 are equal).
A profile's predicted P(A) is the judge's fitted probability of choosing A on this pair.
""",
    "simulate": """
**What it estimates.** From a judge's fitted profile (its posterior draws of the weights): the win rate of a
model under test against an opponent as observed, as the profile predicts it, and as it would be if the
model's responses showed an attribute more (**inject +**) or less (**suppress -**) than the opponent's in a
share of the pairs (the **success rate**).

**How.** Every pair is turned so that the model under test is response A. Injecting an attribute sets its
comparison feature to +1 (the model ahead on it) where it was 0 or -1, suppressing sets it to -1, each in a
share of the pairs equal to the success rate (the exact expectation over which changes take effect, not a
random draw, so reruns agree). The judge's probability of preferring the model on a pair is the sigmoid of
its weights times the features; the win rate is its mean over the pairs (ties count half). This is done for
every posterior draw of the weights, so each rate has a **94% credible interval**; the **predictive
interval** adds the noise of the judge's own labels on this many pairs (compare the observed rate with it).
The **contributions** (Shapley values over the manipulated attributes) add up to the change in win rate.
A conditional attribute (empathy, constraints...) can change only where its query case applies.

**Limits.** It assumes the manipulation changes only the chosen attributes and that the judge's profile holds
on the manipulated responses; the paper's experiment (telling the model to show what the judge likes) is
the real test.
""",
    "annotate": """
**Annotate** asks an LLM, per sample, for the query analysis, the 0-3 ratings of both responses, the
conditional ratings and the errors against a reference answer (5 calls per sample); every call is stored
as it arrives, so a rerun or resume never pays twice. **Fit** runs one Bayesian logistic regression per
scope and judge on a feature set. Jobs run in a worker: you can leave the page and come back.
""",
}


def how_to_read(page: str, *, expanded: bool = False) -> None:
    """An expander "How to read this" with the page's explanation."""
    with st.expander("How to read this", expanded=expanded, icon=":material/help:"):
        st.markdown(HOW_TO_READ[page].strip())


@st.cache_data(show_spinner=False)
def catalogue_frame() -> pd.DataFrame:
    """The attribute catalogue as a table: label, definition, how it is rated and compared."""
    return pd.DataFrame([{"attribute": a.label, "means": a.definition, "rated as": a.rating,
                          "compared as": catalogue.rule_text(a)} for a in catalogue.attributes()])


def attribute_catalogue(*, key: str) -> None:
    """An expander with every attribute's definition and comparison rule (from core/catalogue.py)."""
    with st.expander(f"The {len(catalogue.attributes())} attributes: what each means and how it is compared",
                     icon=":material/menu_book:"):
        st.caption("Each comparison feature is +1 when response A is better on the attribute, -1 when B is, "
                   "0 when they are equal or the attribute does not apply.")
        st.dataframe(catalogue_frame(), hide_index=True, key=key, width="stretch",
                     column_config={"means": st.column_config.TextColumn(width="large")})


#: what the "shown first" term of a profile means, beside the catalogue's attributes
POSITION_DEFINITION = ("The response shown first, whatever its content: the judge's position bias, net of the "
                       "attributes (positive: the first slot is favoured).")
DEFINITION_COLUMN = st.column_config.TextColumn(
    "what it means", width="large",
    help="the attribute's definition (from the catalogue); the catalogue above the tables also says how each "
         "attribute is compared")


@st.cache_data(show_spinner=False)
def definitions() -> dict[str, str]:
    """Definition by attribute label and by key (the catalogue's words), and the position term's."""
    from core.profile import POSITION_LABEL

    out = {POSITION_LABEL: POSITION_DEFINITION, "position": POSITION_DEFINITION}
    for a in catalogue.attributes():
        out[a.key] = out[a.label] = f"{a.definition} ({catalogue.rule_text(a)})"
    return out


def with_definitions(frame: pd.DataFrame, by: str = "label", after: str | None = None) -> pd.DataFrame:
    """``frame`` with a ``definition`` column (what each row's attribute means and how it is compared),
    placed after column ``after`` (default: after ``by``). Rows that are no attribute get none."""
    defs = definitions()
    out = frame.copy()
    col = out[by].map(lambda v: defs.get(v))
    at = list(out.columns).index(after or by) + 1
    out.insert(at, "definition", col)
    return out
