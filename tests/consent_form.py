"""The tests' name for the consent-screen client, which lives in the package (the demo uses
it too): `gwsync.emulator.consent_client`."""

from gwsync.emulator.consent_client import ConsentForm, ConsentPageError, consent, open_form, submit

__all__ = ["ConsentForm", "ConsentPageError", "consent", "open_form", "submit"]
