package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// BundleObject is one file of a bundle bucket: stored under its SHA-256 digest, with the
// name it was bundled from.
type BundleObject struct {
	Digest string `json:"sha256"`
	Name   string `json:"name"`
	Size   uint64 `json:"size"`
	URI    string `json:"uri"`
}

// Bundles is one bundle bucket (an object store whose files are named by their SHA-256
// digest), as the client reaches it.
type Bundles struct {
	c      *Client
	bucket string
}

// Bundles is the bundle bucket named bucket (v1.BundleBucket of the namespace: its own,
// made by a node with the node's bounds).
func (c *Client) Bundles(bucket string) Bundles { return Bundles{c: c, bucket: bucket} }

// store opens (creating when asked) the object store bucket. A request the server refuses
// for this user's permissions is said so at once: another namespace's bucket waited for
// the timeout and said "context deadline exceeded" (a newcomer's walk).
func (b Bundles) store(ctx context.Context, create bool) (jetstream.ObjectStore, error) {
	concerns := func(violation string) bool {
		return strings.Contains(violation, "OBJ_"+b.bucket+`"`) || strings.Contains(violation, "OBJ_"+b.bucket+".") || strings.Contains(violation, "$O."+b.bucket+".")
	}
	since, _ := b.c.nc.Denials() // closed once a violation comes after this call began
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for {
			next, last := b.c.nc.Denials()
			select {
			case <-next:
				if concerns(last()) {
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	store, err := b.open(ctx, create)
	if _, last := b.c.nc.Denials(); err != nil && closed(since) && concerns(last()) {
		return nil, v1.Errorf(v1.CodeForbidden, "permission denied: this NATS user may not use object store %s (%s); namespace %s's own is %s", b.bucket, last(), b.c.ns, v1.BundleBucket(b.c.ns))
	}
	return store, err
}

// closed says whether ch is closed (a nil channel never is).
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// open opens (creating when asked) the object store bucket.
func (b Bundles) open(ctx context.Context, create bool) (jetstream.ObjectStore, error) {
	c, bucket := b.c, b.bucket
	if err := v1.ValidateToken("bucket", bucket); err != nil {
		return nil, err
	}
	js, err := jetstream.New(c.nc.Conn)
	if err != nil {
		return nil, err
	}
	if !create {
		store, err := js.ObjectStore(ctx, bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, v1.NotFound("bundle bucket %s not found (nothing was bundled into it yet)", bucket)
		}
		return store, err
	}
	if bucket != v1.BundleBucket(c.ns) {
		store, err := js.ObjectStore(ctx, bucket)
		if err == nil || !errors.Is(err, jetstream.ErrBucketNotFound) {
			return store, err
		}
	} else {
		// the node makes the namespace's own bucket, with its bounds, and keeps it so
		// (no direct gets, which a tenant may not make): a user may write to it, not
		// configure it. Asked each time: a bucket made before is brought in line.
		var reply v1.BundleBucketReply
		if err := svc.Call(ctx, c.nc, v1.ControlSubject(c.ns, v1.VerbBundleBucket), struct{}{}, &reply); err != nil {
			return nil, c.noNode(err, "make bundle bucket "+bucket)
		}
		return js.ObjectStore(ctx, bucket)
	}
	store, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: bucket, Description: "nex workload bundles, by SHA-256"})
	if err != nil {
		return nil, fmt.Errorf("open object store %s (needs JetStream): %w", bucket, err)
	}
	return store, nil
}

// Put stores the file at path in the bucket under its SHA-256 digest, unless an object
// with that digest is there already (bundles are deduplicated), and describes it.
func (b Bundles) Put(ctx context.Context, path string) (BundleObject, bool, error) {
	bucket := b.bucket
	digest, size, err := fileDigest(path)
	if err != nil {
		return BundleObject{}, false, err
	}
	store, err := b.store(ctx, true)
	if err != nil {
		return BundleObject{}, false, err
	}
	obj := BundleObject{Digest: digest, Name: baseOf(path), Size: size, URI: "nats://" + bucket + "/" + digest}
	if _, err := store.GetInfo(ctx, digest); err == nil {
		return obj, false, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return BundleObject{}, false, err
	}
	defer f.Close()
	if _, err := store.Put(ctx, jetstream.ObjectMeta{Name: digest, Description: obj.Name}, f); err != nil {
		return BundleObject{}, false, fmt.Errorf("store %s in %s: %w", path, bucket, err)
	}
	return obj, true, nil
}

// List lists the objects of the bucket (none when nothing was bundled into it yet).
func (b Bundles) List(ctx context.Context) ([]BundleObject, error) {
	bucket := b.bucket
	store, err := b.store(ctx, false)
	if v1.IsNotFound(err) {
		return []BundleObject{}, nil
	}
	if err != nil {
		return nil, err
	}
	infos, err := store.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return []BundleObject{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]BundleObject, 0, len(infos))
	for _, i := range infos {
		out = append(out, BundleObject{Digest: i.Name, Name: i.Description, Size: i.Size, URI: "nats://" + bucket + "/" + i.Name})
	}
	slices.SortFunc(out, func(a, b BundleObject) int { return strings.Compare(a.Name+a.Digest, b.Name+b.Digest) })
	return out, nil
}

// Remove removes the object with digest (or a unique prefix of it) from the bucket.
func (b Bundles) Remove(ctx context.Context, digest string) (BundleObject, error) {
	bucket := b.bucket
	list, err := b.List(ctx)
	if err != nil {
		return BundleObject{}, err
	}
	var match []BundleObject
	for _, o := range list {
		if strings.HasPrefix(o.Digest, digest) {
			match = append(match, o)
		}
	}
	switch {
	case digest == "" || len(match) == 0:
		return BundleObject{}, v1.NotFound("no bundle %q in %s", digest, bucket)
	case len(match) > 1:
		return BundleObject{}, v1.BadRequest("digest prefix %q is ambiguous in %s (%d bundles)", digest, bucket, len(match))
	}
	store, err := b.store(ctx, false)
	if err != nil {
		return BundleObject{}, err
	}
	if err := store.Delete(ctx, match[0].Digest); err != nil {
		return BundleObject{}, err
	}
	return match[0], nil
}

func fileDigest(path string) (string, uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), uint64(n), nil
}

func baseOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[i+1:]
	}
	return path
}
