"""Routes a few queries through routerd (one of them inline, decided at once without waiting for
a batch), prints the model pool, the chosen models and the mode that decided each, and reports each
request as completed.

    PYTHONPATH=<build>/python:clients/python /usr/bin/python3 clients/python/example.py \
        [--address 127.0.0.1:50051] [--admin_address 127.0.0.1:50052]
        [--ca_file CA.pem [--cert_file C.pem --key_file C.key]] [--token_file admin.token]

Listing the models is a RouterAdmin call: it goes to --admin_address (routerd's admin.listen;
default: --address) with the token of --token_file. With --ca_file the example speaks TLS to
routerd (and presents a client certificate when given one).

Exits 1 with the status if a call fails.
"""

import argparse
import sys

from router_client import RouterClient, RouterError, make_query, mode_name

PROMPTS = [
    ("ex-1", "What is the capital of France?"),
    ("ex-2", "Write a Python function that reverses a linked list."),
    ("ex-3", "Prove that the square root of 2 is irrational."),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--admin_address")
    parser.add_argument("--ca_file")
    parser.add_argument("--cert_file")
    parser.add_argument("--key_file")
    parser.add_argument("--token_file")
    args = parser.parse_args()
    try:
        security = dict(ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file,
                        token_file=args.token_file)
        with RouterClient(args.admin_address or args.address, **security) as admin:
            models = admin.list_models()
            print("models:", ", ".join(m.deployment.name for m in models))
        with RouterClient(args.address, **security) as client:
            # One query at a time; each answer names the model and holds an assignment_id. The
            # first waits for a batch (routerd's default mode); the second is decided inline.
            assignments = [client.route(make_query(*PROMPTS[0], mode="batch")),
                           client.route(make_query(*PROMPTS[1], mode="inline"))]
            # The same, over one stream (answers may come in any order).
            for answer in client.route_stream([make_query(*PROMPTS[2])]):
                if answer.WhichOneof("result") == "error":
                    print(f"{answer.error.query_id}: error {answer.error.code} "
                          f"{answer.error.message}")
                else:
                    assignments.append(answer.assignment)

            for a in assignments:
                mode = mode_name(a.decision_mode)
                if mode == "inline":
                    d = a.inline_decision
                    why = (f"inline, lambda {d.lambda_per_usd:.2f}/USD, window {d.window_id} "
                           f"spent ${d.window_spent_usd:.6f}")
                else:
                    why = f"{mode}, batch {a.decision.batch_id}"
                print(f"{a.query_id} -> {a.model} (predicted quality {a.predicted_quality:.3f}, "
                      f"cost ${a.predicted_cost_usd:.6f}, {why})")
                # ... call the model here, then report what it really cost:
                done = client.complete(a.assignment_id, actual_cost_usd=a.predicted_cost_usd)
                print(f"{a.query_id} completed, recorded ${done.recorded_cost_usd:.6f}")
    except RouterError as e:
        print(f"example: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
