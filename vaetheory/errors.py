"""The errors vaetheory raises, and the verdicts of its checkers, each with its exit code.

=====================  ==========  =========================================================
class                  exit code   meaning
=====================  ==========  =========================================================
:class:`ParameterError` 2          an argument or option is wrong (usage): a hyperparameter
                                   that is not positive, a latent dim < 1, conflicting options
:class:`NotCoveredError` 2         the setting asked for has no verified closed form
                                   (a kind of ParameterError: ask ``check`` instead)
:class:`DataError`     1           the data are unusable: unreadable file, NaN/inf, mismatched
                                   rows, too few samples
:class:`ResourceError` 1           the machine cannot do it: not enough memory, disk full,
                                   permission denied on writing
:class:`NotRepresentableError` 1   a value float64 cannot hold in the data's units (e.g. an
                                   eigenvalue 1e-400 of data at 1e-200; a kind of DataError)
anything else          70          a bug in vaetheory (``EX_SOFTWARE``): the command line says so
                                   and asks for ``--debug``
=====================  ==========  =========================================================

Every class derives from :class:`VaetheoryError`; the first three are also ``ValueError``, so
``except ValueError`` keeps working for library users.
"""

from __future__ import annotations

import enum

__all__ = ["VaetheoryError", "ParameterError", "NotCoveredError", "DataError", "ResourceError",
           "NotRepresentableError", "Verdict", "EXIT_INTERNAL", "EXIT_INTERRUPTED"]

#: exit code of an internal error (a bug): sysexits.h EX_SOFTWARE
EXIT_INTERNAL = 70
#: exit code after Ctrl-C (128 + SIGINT), the shell convention
EXIT_INTERRUPTED = 130


class VaetheoryError(Exception):
    """Base class of every error vaetheory raises on purpose; ``exit_code`` is the CLI's.

    ``cli``: the same message in the command line's words (its option names, e.g. ``--key``
    where the library says ``key=``); :attr:`cli_message` falls back to the message itself.
    """

    exit_code = 1

    def __init__(self, message="", *, cli=None):
        super().__init__(message)
        self.cli = cli

    @property
    def cli_message(self) -> str:
        return self.cli if self.cli is not None else str(self)


class ParameterError(VaetheoryError, ValueError):
    """An argument (or command-line option) is invalid: a usage error."""

    exit_code = 2


class NotCoveredError(ParameterError):
    """The requested setting or dimension relation has no verified closed form."""


class DataError(VaetheoryError, ValueError):
    """The data themselves are unusable (unreadable, non-finite, too few samples, mismatched)."""

    exit_code = 1


class NotRepresentableError(DataError):
    """A quantity under- or overflows float64 in the data's units (docs/theory.md §9.1).

    The scaled value (a power of two times it) is exact and available: e.g.
    :attr:`Spectrum.scaled_eigenvalues <vaetheory.moments.Spectrum.scaled_eigenvalues>` with
    ``scale_exponent``. Raised instead of a silent 0, inf or NaN.
    """


class ResourceError(VaetheoryError):
    """The machine cannot do what was asked (memory, disk space, permissions on writing)."""

    exit_code = 1


class Verdict(str, enum.Enum):
    """Outcome of a check at one point; :attr:`exit_code` is what the command line returns.

    CONFIRMED / CONSISTENT / NUMERICAL exit 0, INCONCLUSIVE 4, REFUTED 3. The audit of trained
    weights (:mod:`vaetheory.audit`): AT OPTIMUM 0, NEAR 5, FAR 6 (REFUTED 3 if the weights' loss
    is below the closed-form minimum; NO OPTIMUM 7 where a learned decoder variance leaves the
    loss without a minimum, docs/theory.md §12.2). Over several points the worst verdict (:meth:`worst`)
    decides: REFUTED and FAR over INCONCLUSIVE and NEAR over the rest. A ``Verdict`` is a ``str``:
    it compares equal to its value and serialises to it in JSON.
    """

    CONFIRMED = "CONFIRMED"          # exact checker: the best run matches the closed form
    CONSISTENT = "CONSISTENT"        # stochastic training landed on the predicted counts
    NUMERICAL = "NUMERICAL"          # no closed form: a numerical optimum, nothing to confirm
    INCONCLUSIVE = "INCONCLUSIVE"    # neither confirmed nor refuted
    REFUTED = "REFUTED"              # a run went below the claimed minimum: a counterexample
    AT_OPTIMUM = "AT OPTIMUM"        # audit: trained weights at the closed-form optimum
    NEAR = "NEAR"                    # audit: close (relative loss gap <= near_rtol), not at it
    FAR = "FAR"                      # audit: far from the optimum
    NO_OPTIMUM = "NO OPTIMUM"        # audit: the loss has no minimum (a learned decoder
    #                                  variance with nothing left for the noise, docs §12.2)

    def __str__(self):
        return self.value

    def __format__(self, spec):
        return format(self.value, spec)

    @property
    def exit_code(self) -> int:
        return {"INCONCLUSIVE": 4, "REFUTED": 3, "NEAR": 5, "FAR": 6,
                "NO OPTIMUM": 7}.get(self.value, 0)

    @property
    def severity(self) -> int:
        return {"INCONCLUSIVE": 1, "REFUTED": 2, "NEAR": 1, "FAR": 2,
                "NO OPTIMUM": 2}.get(self.value, 0)

    @classmethod
    def worst(cls, verdicts) -> "Verdict":
        """The most severe of ``verdicts`` (names or members)."""
        return max((cls(v) for v in verdicts), key=lambda v: v.severity)
