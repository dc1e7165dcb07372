"""Test helper for the object-store tests: create and list containers/buckets
in Azurite and moto (object_store cannot create them).

    python objstore.py create az|s3 NAME
    python objstore.py dump   az|s3 NAME      -> JSON {object name: text}
    python objstore.py put    az|s3 NAME      <- JSON {object name: text} on stdin
    python objstore.py delete az|s3 NAME KEY
    python objstore.py put    az|s3 NAME KEY  <- the one object's bytes on stdin
"""
import json
import sys

AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)


def s3():
    import boto3

    return boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:5555",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )


def main(cmd, kind, name, key=None):
    if cmd == "delete" or (cmd == "put" and key is not None):
        body = sys.stdin.buffer.read() if cmd == "put" else None
        if kind == "az":
            from azure.storage.blob import BlobServiceClient

            c = BlobServiceClient.from_connection_string(AZURITE).get_container_client(name)
            if cmd == "delete":
                c.delete_blob(key)
            else:
                c.upload_blob(key, body, overwrite=True)
        elif cmd == "delete":
            s3().delete_object(Bucket=name, Key=key)
        else:
            s3().put_object(Bucket=name, Key=key, Body=body)
        return
    if kind == "az":
        from azure.storage.blob import BlobServiceClient

        svc = BlobServiceClient.from_connection_string(AZURITE)
        if cmd == "create":
            svc.create_container(name)
            return
        c = svc.get_container_client(name)
        if cmd == "put":
            for k, v in json.load(sys.stdin).items():
                c.upload_blob(k, v.encode("utf-8"), overwrite=True)
            return
        out = {b.name: c.download_blob(b.name).readall().decode("utf-8", "replace") for b in c.list_blobs()}
    else:
        client = s3()
        if cmd == "create":
            client.create_bucket(Bucket=name)
            return
        if cmd == "put":
            for k, v in json.load(sys.stdin).items():
                client.put_object(Bucket=name, Key=k, Body=v.encode("utf-8"))
            return
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for o in page.get("Contents", []):
                body = client.get_object(Bucket=name, Key=o["Key"])["Body"].read()
                out[o["Key"]] = body.decode("utf-8", "replace")
    print(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:5])
