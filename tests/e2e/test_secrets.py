"""e2e_secrets: no secret reaches a log. A full drain at debug level (every
request logged at its most verbose) with temporary credentials (access key,
secret key and session token in the configuration), a PostgreSQL password in
the connection string, and `canopy config show`: none of the secret key,
the session token or the password appears in anything canopy printed."""
import json
import sys
import uuid

from e2e_lib import check, log, main


def body(env):
    in_bucket, out_bucket = env.bucket("in"), env.bucket("out")
    in_queue, _ = env.queue("in", visibility=30)
    env.create_db()
    keys = env.queue_crops(in_bucket, in_queue, "s/img-%02d.png", 3)
    # Temporary credentials of an assumed role, which the emulator (with its
    # authentication on) accepts; the token is longer than an INI line of 200.
    import boto3
    iam, sts = boto3.client("iam"), boto3.client("sts")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName="canopy-e2e-" + env.suffix,
                           AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    iam.put_role_policy(RoleName=role["RoleName"], PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    creds = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="e2e")["Credentials"]
    key, secret, token = creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
    password = "pg-Pa55-" + uuid.uuid4().hex[:12]
    conninfo = env.conninfo() + " password='%s'" % password
    cfg = env.config(in_queue, out_bucket, "", "out/", idle_exit=2, detector=False,
                     extra={"aws": {"access_key_id": key, "secret_access_key": secret,
                                    "session_token": token},
                            "postgres": {"conninfo": conninfo},
                            "batch": {"unreachable_exit_seconds": 20},
                            "log": {"level": "debug"}})
    rc, out, err = env.run(["drain", "-c", cfg], "drain", timeout=240, expect_rc=0)
    check(len(env.ok_keys()) == len(keys), "the drain did not process the images")
    check("heartbeat" in err or "debug" in err, "the log is not at debug level")
    rc2, out2, err2 = env.run(["config", "show", "-c", cfg], "config", timeout=60, expect_rc=0)
    text = out + err + out2 + err2
    for name, value in (("AWS secret key", secret), ("session token", token),
                        ("PostgreSQL password", password)):
        check(value not in text, "the %s appears in canopy's output", name)
    check(token[:24] not in text, "a prefix of the session token appears in the output")
    log("%d lines of debug log and config show: no secret key, token or password",
        len(text.splitlines()))


if __name__ == "__main__":
    sys.exit(main("secrets", body))
