package main

// PKI and kubeconfig generation for herald-cp. Everything lives under
// DIR/pki and is generated once; later runs reuse it (the apiserver serving
// certificate is re-issued only if its SANs no longer cover the requested
// bind address / service IP).

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

type pki struct {
	dir    string
	caCert *x509.Certificate
	caKey  crypto.Signer
}

func (p *pki) path(name string) string { return filepath.Join(p.dir, name) }

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// writeFileAtomic writes data to path via a temporary file + rename so a
// crash never leaves a half-written key or certificate behind.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func newECKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func loadCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}

func loadKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", path)
	}
	return s, nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
}

const validity = 10 * 365 * 24 * time.Hour

// ensurePKI loads or creates everything under dir.
func ensurePKI(dir string, bindIP, serviceIP net.IP) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &pki{dir: dir}
	if err := p.ensureCA(); err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	if err := p.ensureServing(bindIP, serviceIP); err != nil {
		return nil, fmt.Errorf("apiserver serving cert: %w", err)
	}
	if err := p.ensureClient("admin", "herald-admin", []string{"system:masters"}); err != nil {
		return nil, fmt.Errorf("admin cert: %w", err)
	}
	if err := p.ensureClient("controller-manager", "system:kube-controller-manager", nil); err != nil {
		return nil, fmt.Errorf("controller-manager cert: %w", err)
	}
	if err := p.ensureClient("scheduler", "system:kube-scheduler", nil); err != nil {
		return nil, fmt.Errorf("scheduler cert: %w", err)
	}
	if err := p.ensureClient("kube-proxy", "system:kube-proxy", nil); err != nil {
		return nil, fmt.Errorf("kube-proxy cert: %w", err)
	}
	if err := p.ensureServiceAccountKey(); err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	return p, nil
}

func (p *pki) ensureCA() error {
	certPath, keyPath := p.path("ca.crt"), p.path("ca.key")
	if fileExists(certPath) && fileExists(keyPath) {
		c, err := loadCert(certPath)
		if err != nil {
			return err
		}
		k, err := loadKey(keyPath)
		if err != nil {
			return err
		}
		p.caCert, p.caKey = c, k
		return nil
	}
	key, err := newECKey()
	if err != nil {
		return err
	}
	sn, err := serial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "herald-cp-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(certPath, encodeCert(der), 0o644); err != nil {
		return err
	}
	p.caCert, p.caKey = c, key
	return nil
}

func (p *pki) issue(name string, tmpl *x509.Certificate) error {
	key, err := newECKey()
	if err != nil {
		return err
	}
	sn, err := serial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl.SerialNumber = sn
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(validity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, key.Public(), p.caKey)
	if err != nil {
		return err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(p.path(name+".key"), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(p.path(name+".crt"), encodeCert(der), 0o644)
}

// validLeaf reports whether name.crt/name.key exist, chain to the current CA
// and are not close to expiry.
func (p *pki) validLeaf(name string) (*x509.Certificate, bool) {
	if !fileExists(p.path(name + ".key")) {
		return nil, false
	}
	c, err := loadCert(p.path(name + ".crt"))
	if err != nil {
		return nil, false
	}
	if err := c.CheckSignatureFrom(p.caCert); err != nil {
		return nil, false
	}
	if time.Until(c.NotAfter) < 24*time.Hour {
		return nil, false
	}
	return c, true
}

var servingDNSNames = []string{
	"kubernetes", "kubernetes.default", "kubernetes.default.svc",
	"kubernetes.default.svc.cluster.local", "localhost",
}

func (p *pki) ensureServing(bindIP, serviceIP net.IP) error {
	ips := []net.IP{bindIP, net.ParseIP("127.0.0.1"), serviceIP}
	if c, ok := p.validLeaf("apiserver"); ok {
		covered := true
		for _, ip := range ips {
			if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
				covered = false
			}
		}
		if covered {
			return nil
		}
	}
	return p.issue("apiserver", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    servingDNSNames,
		IPAddresses: ips,
	})
}

func (p *pki) ensureClient(name, cn string, groups []string) error {
	if _, ok := p.validLeaf(name); ok {
		return nil
	}
	return p.issue(name, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: groups},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

func (p *pki) ensureServiceAccountKey() error {
	keyPath, pubPath := p.path("sa.key"), p.path("sa.pub")
	if fileExists(keyPath) && fileExists(pubPath) {
		return nil
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644)
}

// writeKubeconfig writes a kubeconfig with the CA and the client cert/key
// embedded, so the file is self-contained.
func (p *pki) writeKubeconfig(path, server, user, certName string) error {
	ca, err := os.ReadFile(p.path("ca.crt"))
	if err != nil {
		return err
	}
	crt, err := os.ReadFile(p.path(certName + ".crt"))
	if err != nil {
		return err
	}
	key, err := os.ReadFile(p.path(certName + ".key"))
	if err != nil {
		return err
	}
	b64 := base64.StdEncoding.EncodeToString
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: herald
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: herald
  context:
    cluster: herald
    user: %s
current-context: herald
preferences: {}
`, server, b64(ca), user, b64(crt), b64(key), user)
	return writeFileAtomic(path, []byte(cfg), 0o600)
}

// firstServiceIP returns the first usable address of a service CIDR (the
// ClusterIP kube-apiserver gives the "kubernetes" Service).
func firstServiceIP(cidr string) (net.IP, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, err
	}
	ip := slices.Clone(n.IP)
	for i := len(ip) - 1; i >= 0; i-- {
		ip[i]++
		if ip[i] != 0 {
			break
		}
	}
	if !n.Contains(ip) {
		return nil, errors.New("service CIDR too small")
	}
	return ip, nil
}
