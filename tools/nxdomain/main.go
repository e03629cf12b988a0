// Command nxdomain answers every DNS query on a UDP address with NXDOMAIN
// (name does not exist), at once. scripts/dockerd.sh gives it to the
// private dockerd of `make test-compose` as the containers' only outside
// resolver: dockerd's DNS answers the compose network's names itself and
// forwards the rest (a gRPC client's TXT lookup of _grpc_config.<host>, on
// every dial); with no resolver that answers, each such lookup waits for
// dockerd's timeouts (10 s and more), and no test traffic may leave the
// machine.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
)

func main() {
	addr := flag.String("listen", "127.0.53.53:53", "UDP address to answer on")
	flag.Parse()
	conn, err := net.ListenPacket("udp", *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nxdomain: %v\n", err)
		os.Exit(1)
	}
	buf := make([]byte, 4096)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			fmt.Fprintf(os.Stderr, "nxdomain: %v\n", err)
			os.Exit(1)
		}
		if reply, err := nxdomain(buf[:n]); err == nil {
			_, _ = conn.WriteTo(reply, from)
		}
	}
}

// nxdomain turns a query into its NXDOMAIN reply: the header with QR and RA
// set and RCODE 3, then the first question as asked, and no records.
func nxdomain(q []byte) ([]byte, error) {
	const header = 12
	if len(q) < header {
		return nil, errors.New("short query")
	}
	end := header
	for end < len(q) && q[end] != 0 { // the question's name, label by label
		end += 1 + int(q[end])
	}
	end += 1 + 4 // the root label, then type and class
	if end > len(q) {
		return nil, errors.New("truncated question")
	}
	r := append([]byte(nil), q[:end]...)
	r[2] = 0x80 | r[2]&0x79 // QR, keep opcode and RD, clear AA and TC
	r[3] = 0x80 | 3         // RA, RCODE NXDOMAIN
	r[4], r[5] = 0, 1       // one question
	clear(r[6:12])          // no answer, authority or additional records
	return r, nil
}
