"""Two users exchange an encrypted, signed message through a local mmtp-server.

Start the server first (no configuration needed):  mmtp-server
Then run:                                          python docs/example_two_users.py
"""

import os

from mmtp_proto.client import Client
from mmtp_proto.keystore import Keystore

PORT = int(os.environ.get("MMTP_SECURE_PORT", "8026"))
ALICE, BOB = "(alice)%(localhost)", "(bob)%(localhost)"

# verify="tofu" pins the server's self-signed certificate on first use, like SSH.
alice = Client("localhost", secure_port=PORT, verify="tofu")
bob = Client("localhost", secure_port=PORT, verify="tofu")
alice.connect()
bob.connect()

# Keys live in the user's keystore (files 0600), so a second run reuses them.
# Ed25519 is fast; the default (algorithm="rsa4096") is the design's RSA-4096.
keystore = Keystore()
for client, email, name in ((alice, ALICE, "Alice"), (bob, BOB, "Bob")):
    if keystore.has_private(email):
        client.add_private_key(keystore.load_private(email), email)
    else:
        client.generate_keys(email, name, algorithm="ed25519")
    client.register_public_key(email)  # trust on first use; the same key again is fine

sent = alice.send_mail(ALICE, BOB, "Hello Bob", "Encrypted, signed, stamped.", encrypt=True)
print("sent", sent.message_id, "signature verified by server:", sent.signature_verified)

bob.auth(BOB)  # proves Bob holds the key registered for his address
inbox = bob.receive(BOB)
for packet in inbox.messages:
    message = bob.open(packet)
    print(f"from {message.sender}: {message.subject!r} / {message.body!r}")
    print(f"  encrypted={message.encrypted} signature={message.signature}")
bob.delete(BOB, [p["meta"]["messageId"] for p in inbox.messages])

alice.disconnect()
bob.disconnect()
