"""ICE servers for the live webcam's WebRTC connection, from the environment.

streamlit-webrtc (0.79) fetches TURN credentials through helpers it exports; this module picks
one from the variables it reads, in its own order of preference:

- CLOUDFLARE_TURN_KEY_ID + CLOUDFLARE_TURN_KEY_API_TOKEN: `get_cloudflare_ice_servers`
- TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN: `get_twilio_ice_servers` (needs the `twilio` package)
- HF_TOKEN: `get_hf_ice_servers` (Hugging Face's TURN server), plus Google's public STUN server

With none of them set, or when fetching fails, it returns no ICE servers at all: a browser on
the same machine or network connects directly, and nothing waits on an unreachable STUN server.
(Leaving iceServers unset would make streamlit-webrtc add Google's STUN server itself.)
"""
import logging
import os

log = logging.getLogger(__name__)

GOOGLE_STUN = {"urls": "stun:stun.l.google.com:19302"}
PROVIDERS = (  # (name, environment variables, streamlit_webrtc helper)
    ("Cloudflare", ("CLOUDFLARE_TURN_KEY_ID", "CLOUDFLARE_TURN_KEY_API_TOKEN"), "get_cloudflare_ice_servers"),
    ("Twilio", ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"), "get_twilio_ice_servers"),
    ("Hugging Face", ("HF_TOKEN",), "get_hf_ice_servers"),
)


def configured_provider(env=None):
    """(name, credential values, helper name) of the first provider whose variables are all set, or None."""
    env = os.environ if env is None else env
    for name, variables, helper in PROVIDERS:
        values = [env.get(v, "") for v in variables]
        if all(values):
            return name, values, helper
        if any(values):
            missing = [v for v, x in zip(variables, values) if not x]
            log.warning("%s TURN is half configured: %s not set; skipping it", name, ", ".join(missing))
    return None


def ice_servers(env=None, fetch=None) -> list:
    """ICE servers for the configured provider, or [] when none is configured or fetching fails.

    fetch: helper name -> callable(*credentials) returning a list of ICE servers (by default the
    streamlit_webrtc helpers; tests pass their own to stay off the network).
    """
    provider = configured_provider(env)
    if provider is None:
        return []
    name, values, helper = provider
    fetch = fetch or _webrtc_helper
    try:
        servers = list(fetch(helper)(*values))
    except Exception as e:  # offline, bad credentials, missing twilio package: go on without TURN
        log.warning("could not get %s TURN credentials (%s); using no ICE servers", name, e)
        return []
    return servers + [GOOGLE_STUN] if name == "Hugging Face" else servers


def rtc_configuration(env=None, fetch=None) -> dict:
    """The `rtc_configuration` for webrtc_streamer: {"iceServers": [...]}, possibly empty."""
    return {"iceServers": ice_servers(env, fetch)}


def _webrtc_helper(name):
    import streamlit_webrtc

    return getattr(streamlit_webrtc, name)
