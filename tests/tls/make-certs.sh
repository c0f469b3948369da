#!/bin/sh
# SPDX-License-Identifier: MIT
# Make the certificates the TLS tests use, into DIR (none is committed):
#   ca.pem ca.key            a test CA
#   server.pem server.key    localhost, 127.0.0.1 and ::1, signed by the CA
#   server2.pem server2.key  the same names, another key (a renewed certificate)
#   expired.pem expired.key  localhost, signed by the CA, expired yesterday
#   wronghost.pem/.key       wrong.invalid, signed by the CA
#   self.pem self.key        localhost, self-signed
#   client.pem client.key    CN=sk-test-client, signed by the CA
#   other-ca.pem/.key        a second CA, and other-client.pem/.key signed by it
# EC P-256 keys: quick to make. usage: make-certs.sh DIR
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
ca() { # NAME CN
    key "$1"
    openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 3 -subj "/CN=$2" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign,cRLSign
}
leaf() { # NAME CN SAN CA DAYS
    key "$1"
    openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$2"
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$4.pem" -CAkey "$4.key" -CAcreateserial \
        -days "$5" -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
here='DNS:localhost,IP:127.0.0.1,IP:::1'
ca ca "sockkit test CA"
ca other-ca "another test CA"
leaf server localhost "$here" ca 3
leaf server2 localhost "$here" ca 3
leaf expired localhost "$here" ca -1
leaf wronghost wrong.invalid DNS:wrong.invalid ca 3
leaf client sk-test-client DNS:sk-test-client ca 3
leaf other-client sk-other-client DNS:sk-other-client other-ca 3
key self
openssl req -x509 -new -key self.key -out self.pem -days 3 -subj /CN=localhost \
    -addext "subjectAltName=$here"
