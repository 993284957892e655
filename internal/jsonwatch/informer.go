package jsonwatch

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// Kind is a kind whose watches are decoded in one pass.
type Kind struct {
	// Object is an object of the kind (a pointer to its struct).
	Object runtime.Object
	// Resource is the kind's plural resource name, as served.
	Resource string
}

// Informers makes the informers of a controller-runtime cache
// (cache.Options.NewInformer): those of its kinds watch with the one-pass
// Decoder, every other kind as client-go does. Listing is left to
// client-go (an informer lists only when the API server cannot stream the
// list as a watch).
type Informers struct {
	params  runtime.ParameterCodec
	codecs  serializer.CodecFactory
	clients map[reflect.Type]kindClient
}

type kindClient struct {
	kind   Kind
	gvk    schema.GroupVersionKind
	client rest.Interface
}

// NewInformers sets up the one-pass watches of kinds, known to scheme.
func NewInformers(cfg *rest.Config, httpClient *http.Client, scheme *runtime.Scheme, kinds ...Kind) (*Informers, error) {
	i := &Informers{
		params:  runtime.NewParameterCodec(scheme),
		codecs:  serializer.NewCodecFactory(scheme),
		clients: map[reflect.Type]kindClient{},
	}
	for _, k := range kinds {
		gvk, err := apiutil.GVKForObject(k.Object, scheme)
		if err != nil {
			return nil, err
		}
		c, err := apiutil.RESTClientForGVK(gvk, true, false, cfg, i.codecs, httpClient)
		if err != nil {
			return nil, fmt.Errorf("a client for %s: %w", gvk, err)
		}
		i.clients[reflect.TypeOf(k.Object)] = kindClient{kind: k, gvk: gvk, client: c}
	}
	return i, nil
}

// NewInformer is the cache's informer constructor.
func (i *Informers) NewInformer(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
	if kc, ok := i.clients[reflect.TypeOf(obj)]; ok {
		lw = &toolscache.ListWatch{
			ListWithContextFunc: toolscache.ToListerWatcherWithContext(lw).ListWithContext,
			WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
				return i.watch(ctx, kc, opts)
			},
		}
	}
	return toolscache.NewSharedIndexInformer(lw, obj, resync, indexers)
}

// watch opens a watch of the kind, cluster-wide, as the cache's watch would
// (with bookmarks), and reads it with the one-pass Decoder.
func (i *Informers) watch(ctx context.Context, kc kindClient, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	opts.AllowWatchBookmarks = true
	body, err := kc.client.Get().Resource(kc.kind.Resource).VersionedParams(&opts, i.params).
		SetHeader("Accept", runtime.ContentTypeJSON).Stream(ctx)
	if err != nil {
		return nil, err
	}
	return NewStreamWatcher(NewDecoder(body, kc.gvk, newOf(kc.kind.Object), i.codecs.UniversalDeserializer())), nil
}

// newOf makes new empty objects of obj's type.
func newOf(obj runtime.Object) func() runtime.Object {
	t := reflect.TypeOf(obj).Elem()
	return func() runtime.Object { return reflect.New(t).Interface().(runtime.Object) }
}
