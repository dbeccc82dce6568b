"""PS3.15 Annex B TLS profiles held to the standard's cipher suite lists, not to ``src``.

The expectations are typed here from the standard, as the state table is in
test_fsm_table.py, and never read from :data:`dicomwire.ul.tls.PROFILE_CIPHERS`:

- B.10 Non-Downgrading BCP 195 and B.9 BCP 195: the four TLS 1.2 suites RFC 7525 §4.2
  (BCP 195) recommends, in the order the tables list them: DHE-RSA/ECDHE-RSA with
  AES-128-GCM, then with AES-256-GCM. The server chooses (RFC 7525 §4.2.1), by its own
  preference, which is that order: an RSA client pinned to TLS 1.2 that offers the suites
  from the k-th on, in reverse order, must get the k-th. That pins the list and its order.
- B.10 does not downgrade: RSA key transport (RFC 7525 §4.1: no forward secrecy), SHA-1,
  3DES and NULL suites are refused; so is a DCMTK client on the retired AES (B.3) or
  "null" profile.
- B.11 Extended BCP 195: ECDHE-ECDSA/ECDHE-RSA/DHE-RSA with AES-GCM ("one or more should be
  supported"); nothing outside that list is negotiated.

Each is checked with Python's ``ssl`` (TLS 1.2, a fixed cipher string), with
``openssl s_client -tls1_2`` and with DCMTK ``echoscu +tls`` and each of its
``--profile-*`` options (the node held to TLS 1.2 so that the suite list decides).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
from collections.abc import Sequence

import pytest

from dicomwire.ul.tls import TLSProfile

from ..conftest import find_dcmtk_tool, find_tool
from .test_tls import (
    PKI,
    Handshake,
    pki,  # noqa: F401 - the module-scoped certificate fixture
    raw_tls,
    run,
    tls_node,
)

# IANA names (as PS3.15 and RFC 7525 print them) -> OpenSSL names (``openssl ciphers -stdname``).
OPENSSL_NAME = {
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256": "DHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384": "DHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_NULL_SHA": "NULL-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA": "DHE-RSA-AES128-SHA",
}

#: RFC 7525 §4.2 (PS3.15 B.9 and B.10 require them), in the order the tables list them.
RECOMMENDED_SUITES = (
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
)
#: PS3.15 B.11 Extended BCP 195: one or more of these, and no other.
EXTENDED_SUITES = frozenset(
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    )
)
#: Suites a non-downgrading server never negotiates: RSA key transport (no forward
#: secrecy), SHA-1 MACs, 3DES, no encryption at all.
DOWNGRADES = (
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_NULL_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
)
#: Profiles whose TLS 1.2 list is RFC 7525's, in its order.
ORDERED_PROFILES = (TLSProfile.NON_DOWNGRADING_BCP195, TLSProfile.BCP195)


def openssl_names(suites: Sequence[str]) -> str:
    """An OpenSSL cipher string offering ``suites`` in this order (and nothing else)."""
    return ":".join(OPENSSL_NAME[s] for s in suites) + ":@SECLEVEL=0"


def rsa_client_tls12(certificates: PKI, suites: Sequence[str]) -> ssl.SSLContext:
    """An RSA client held to TLS 1.2 that offers exactly ``suites`` (built here, not by src)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(openssl_names(suites))
    context.load_verify_locations(cafile=str(certificates.ca))
    context.load_cert_chain(
        certificates.directory / "localhost-rsa.pem",
        certificates.directory / "localhost-rsa-key.pem",
    )
    context.check_hostname = False
    return context


def offerable(suites: Sequence[str]) -> list[str]:
    """Those of ``suites`` this Python's OpenSSL can offer at all (3DES often is not)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    usable = []
    for suite in suites:
        try:
            context.set_ciphers(openssl_names((suite,)))
        except ssl.SSLError:
            continue
        usable.append(suite)
    return usable


def handshakes(
    certificates: PKI, profile: TLSProfile, offers: Sequence[Sequence[str]]
) -> list[Handshake]:
    """One TLS 1.2 handshake per offer against a node (RSA certificate) with ``profile``."""

    async def scenario() -> list[Handshake]:
        async with tls_node(certificates.config(kind="rsa", profile=profile)) as served:
            return [
                await raw_tls(served.tls_port, rsa_client_tls12(certificates, offer))
                for offer in offers
            ]

    return run(scenario())


def test_openssl_names_agree_with_openssl() -> None:
    """The IANA -> OpenSSL table above is OpenSSL's own (when its CLI is installed)."""
    openssl = find_tool("openssl", "apt-get install openssl")
    listing = subprocess.run(
        [openssl, "ciphers", "-stdname", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    known = dict(re.findall(r"^(TLS_\w+)\s+-\s+(\S+)", listing, re.MULTILINE))
    for iana, name in OPENSSL_NAME.items():
        if iana in known:
            assert known[iana] == name, iana
    assert all(s in known for s in (*RECOMMENDED_SUITES, *EXTENDED_SUITES))


# --------------------------------------------------------------------------- Python ssl, TLS 1.2


@pytest.mark.parametrize("profile", ORDERED_PROFILES, ids=lambda p: p.value)
def test_tls12_rsa_client_gets_the_recommended_suites_in_order(
    pki: PKI,  # noqa: F811
    profile: TLSProfile,
) -> None:
    """Offering RFC 7525's suites from the k-th on (reversed): the k-th is negotiated."""
    offers = [tuple(reversed(RECOMMENDED_SUITES[k:])) for k in range(len(RECOMMENDED_SUITES))]
    outcomes = handshakes(pki, profile, offers)
    for k, outcome in enumerate(outcomes):
        assert outcome.error is None, (RECOMMENDED_SUITES[k], outcome.error)
        assert outcome.version == "TLSv1.2"
        assert outcome.cipher == OPENSSL_NAME[RECOMMENDED_SUITES[k]], f"offer {offers[k]}"
        assert outcome.compression is None


@pytest.mark.parametrize("profile", ORDERED_PROFILES, ids=lambda p: p.value)
def test_tls12_each_recommended_suite_alone(pki: PKI, profile: TLSProfile) -> None:  # noqa: F811
    """Every suite RFC 7525 recommends is supported on its own (the DHE ones included)."""
    outcomes = handshakes(pki, profile, [(suite,) for suite in RECOMMENDED_SUITES])
    for suite, outcome in zip(RECOMMENDED_SUITES, outcomes, strict=True):
        assert outcome.error is None, (suite, outcome.error)
        assert (outcome.version, outcome.cipher) == ("TLSv1.2", OPENSSL_NAME[suite])


def test_non_downgrading_refuses_weaker_suites(pki: PKI) -> None:  # noqa: F811
    downgrades = offerable(DOWNGRADES)
    assert "TLS_RSA_WITH_AES_128_GCM_SHA256" in downgrades
    outcomes = handshakes(pki, TLSProfile.NON_DOWNGRADING_BCP195, [(s,) for s in downgrades])
    for suite, outcome in zip(downgrades, outcomes, strict=True):
        assert outcome.error is not None, f"{suite} was negotiated: {outcome.cipher}"


def test_extended_negotiates_only_its_suites(pki: PKI) -> None:  # noqa: F811
    rsa_extended = sorted(s for s in EXTENDED_SUITES if "_RSA_" in s)
    outcomes = handshakes(
        pki,
        TLSProfile.EXTENDED_BCP195,
        [
            rsa_extended,
            *((suite,) for suite in rsa_extended),
            *((s,) for s in offerable(DOWNGRADES)),
        ],
    )
    everything, singles, downgrades = outcomes[0], outcomes[1:5], outcomes[5:]
    allowed = {OPENSSL_NAME[s] for s in EXTENDED_SUITES}
    assert everything.error is None, everything.error
    assert everything.version == "TLSv1.2" and everything.cipher in allowed
    accepted = [o.cipher for o in singles if o.error is None]
    assert accepted and set(accepted) <= allowed
    assert all(o.error is not None for o in downgrades), [o.cipher for o in downgrades]


# --------------------------------------------------------------------------- openssl s_client


def s_client_details(output: str) -> tuple[str | None, str | None]:
    """(protocol, suite) ``openssl s_client`` reports: "New, TLSv1.2, Cipher is X"."""
    match = re.search(r"New, (\S+), Cipher is (\S+)", output)
    return (match.group(1), match.group(2)) if match else (None, None)


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        (TLSProfile.NON_DOWNGRADING_BCP195, RECOMMENDED_SUITES[0]),
        (TLSProfile.BCP195, RECOMMENDED_SUITES[0]),
        (TLSProfile.EXTENDED_BCP195, None),
    ],
    ids=lambda v: v.value if isinstance(v, TLSProfile) else str(v),
)
def test_openssl_s_client_tls12(
    pki: PKI,  # noqa: F811
    profile: TLSProfile,
    expected: str | None,
) -> None:
    """``openssl s_client -tls1_2`` offering every RSA suite of the tables, reversed."""
    openssl = find_tool("openssl", "apt-get install openssl")
    offer = sorted({*RECOMMENDED_SUITES, *(s for s in EXTENDED_SUITES if "_RSA_" in s)})
    cipher_string = ":".join(OPENSSL_NAME[s] for s in reversed(offer))

    async def scenario() -> tuple[int, str]:
        async with tls_node(pki.config(kind="rsa", profile=profile)) as served:
            process = await asyncio.create_subprocess_exec(
                openssl,
                "s_client",
                "-connect",
                f"127.0.0.1:{served.tls_port}",
                "-tls1_2",
                "-cipher",
                cipher_string,
                "-CAfile",
                str(pki.ca),
                "-cert",
                str(pki.directory / "localhost-rsa.pem"),
                "-key",
                str(pki.directory / "localhost-rsa-key.pem"),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                output, _ = await asyncio.wait_for(process.communicate(), 30)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            return process.returncode or 0, output.decode(errors="replace")

    _, output = run(scenario())
    protocol, cipher = s_client_details(output)
    assert protocol == "TLSv1.2", output
    if expected is None:
        assert cipher in {OPENSSL_NAME[s] for s in EXTENDED_SUITES}, output
    else:
        assert cipher == OPENSSL_NAME[expected], output


# --------------------------------------------------------------------------- DCMTK echoscu


def dcmtk_tls_details(output: str) -> tuple[str | None, str | None]:
    """(protocol, suite) from DCMTK's "TLS CONNECTION DETAILS" debug block."""
    protocol = re.search(r"Protocol\s+:\s+(\S+)", output)
    cipher = re.search(r"Ciphersuite\s+:\s+([^,\s]+)", output)
    return (protocol.group(1) if protocol else None, cipher.group(1) if cipher else None)


#: DCMTK 3.6.7's echoscu profile options -> (node profile, expected TLS 1.2 suite; None when
#: any suite of B.11 will do, "refused" when a non-downgrading node must refuse).
DCMTK_PROFILES = {
    "--profile-bcp195-nd": (TLSProfile.NON_DOWNGRADING_BCP195, RECOMMENDED_SUITES[0]),
    "--profile-bcp195": (TLSProfile.BCP195, RECOMMENDED_SUITES[0]),
    "--profile-bcp195-ex": (TLSProfile.EXTENDED_BCP195, None),
    "--profile-aes": (TLSProfile.NON_DOWNGRADING_BCP195, "refused"),
    "--profile-null": (TLSProfile.NON_DOWNGRADING_BCP195, "refused"),
}


@pytest.mark.interop
@pytest.mark.parametrize("option", list(DCMTK_PROFILES))
def test_dcmtk_echoscu_profiles(
    pki: PKI,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    option: str,
) -> None:
    """``echoscu +tls`` (RSA) with each profile option against a node held to TLS 1.2."""
    echoscu = find_dcmtk_tool("echoscu")
    help_text = subprocess.run(
        [echoscu, "--help"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    if option not in help_text:  # an older DCMTK: the profile is not there to test
        pytest.skip(f"this echoscu has no {option}")
    profile, expected = DCMTK_PROFILES[option]

    # Hold every server-side TLS connection of this process to TLS 1.2 (DCMTK runs apart).
    wrap_bio = ssl.SSLContext.wrap_bio

    def tls12_wrap_bio(self: ssl.SSLContext, *args: object, **kwargs: object) -> ssl.SSLObject:
        self.maximum_version = ssl.TLSVersion.TLSv1_2
        return wrap_bio(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "wrap_bio", tls12_wrap_bio)

    async def scenario() -> tuple[int, str]:
        async with tls_node(pki.config(kind="rsa", profile=profile)) as served:
            process = await asyncio.create_subprocess_exec(
                echoscu,
                "+tls",
                str(pki.directory / "localhost-rsa-key.pem"),
                str(pki.directory / "localhost-rsa.pem"),
                "+cf",
                str(pki.ca),
                option,
                "-aet",
                "ECHOSCU",
                "-aec",
                "DICOMWIRE",
                "-d",
                "127.0.0.1",
                str(served.tls_port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                output, _ = await asyncio.wait_for(process.communicate(), 30)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            assert process.returncode is not None
            return process.returncode, output.decode(errors="replace")

    returncode, output = run(scenario())
    if expected == "refused":
        assert returncode != 0, output
        assert "Received Echo Response" not in output
        return
    assert returncode == 0, output
    assert "Received Echo Response (Success)" in output
    protocol, cipher = dcmtk_tls_details(output)
    assert protocol == "TLSv1.2", output
    if expected is None:
        assert cipher in {OPENSSL_NAME[s] for s in EXTENDED_SUITES}, output
    else:
        assert cipher == OPENSSL_NAME[expected], output
