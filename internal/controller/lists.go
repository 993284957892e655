package controller

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// listOf returns an empty list object for kind k, from the scheme.
func listOf(k Kind, scheme *runtime.Scheme) (client.ObjectList, error) {
	gvk, err := apiutil.GVKForObject(k.New(), scheme)
	if err != nil {
		return nil, err
	}
	gvk.Kind += "List"
	obj, err := scheme.New(gvk)
	if err != nil {
		return nil, fmt.Errorf("no list type for %s: %w", k.Kind(), err)
	}
	return obj.(client.ObjectList), nil
}

func objectsOf(list client.ObjectList) ([]client.Object, error) {
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	out := make([]client.Object, 0, len(items))
	for _, item := range items {
		out = append(out, item.(client.Object))
	}
	return out, nil
}
