"""Twitch platform plumbing shared by the apps that talk to Twitch.

* :mod:`.eventsub` - EventSub webhook signatures (HMAC-SHA256), timestamps and the
  subscription types a collector creates per channel.
* :mod:`.oauth` - the id.twitch.tv OAuth client, token grants and token providers
  (app access token by client credentials, user tokens that refresh themselves).
* :mod:`.helix` - the Helix API client: rate-limit headers, 429 and 401 handling,
  users, channels, clips, streams, EventSub subscriptions, chat, shoutouts, moderation.
* :mod:`.tokens` - encryption of OAuth tokens at rest.

Nothing here reads the environment: apps pass their settings in.
"""
