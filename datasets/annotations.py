"""PASCAL VOC object annotations (``Annotations/<id>.xml``) as image-level
labels.

An annotation file is data from outside: it is parsed with defusedxml,
which refuses any DTD (so no entity expansion, "billion laughs", and no
external entity or DTD fetch), after a size check. A file that is
missing, too large, truncated, malformed, hostile or that names an object
outside the dataset's classes is a one-line :class:`DatasetError` naming
it.

``difficult`` objects: the VOC devkit's classification ground truth marks
an image whose only objects of a class are difficult as 0 ("difficult")
for that class, left out of the class's AP. Training needs a 0 or a 1;
here such a class counts as **present** (1): it is in the image, GAIN
erases its attention like any other. :func:`read_annotation` also returns
which classes are present only as difficult, so that an evaluation can
leave those pairs out as the devkit does.
"""
import defusedxml
import defusedxml.ElementTree
import numpy as np

from runtime.errors import DatasetError, one_line
from runtime.files import LIMITS, open_input


def _parse(path):
    """The root element of the XML file ``path``, parsed without DTDs."""
    with open_input(path, 'annotation', error=DatasetError) as f:
        data = f.read(LIMITS['annotation'] + 1)
    try:
        root = defusedxml.ElementTree.fromstring(data, forbid_dtd=True)
    except defusedxml.DefusedXmlException as e:
        raise DatasetError('%s: refused XML: it declares a DTD, entities or '
                           'external references (%s); an annotation needs '
                           'none' % (path, type(e).__name__))
    except defusedxml.ElementTree.ParseError as e:
        raise DatasetError('%s: malformed or truncated XML (%s)'
                           % (path, one_line(e)))
    if root.tag != 'annotation':
        raise DatasetError('%s: not a VOC annotation (root element <%s>, '
                           'expected <annotation>)' % (path, root.tag[:40]))
    return root


def _difficult(obj, path):
    text = (obj.findtext('difficult') or '0').strip()
    if text not in ('0', '1'):
        raise DatasetError('%s: <difficult> must be 0 or 1, got %r'
                           % (path, text[:20]))
    return text == '1'


def read_annotation(path, class_names):
    """Image-level labels of one VOC annotation file.

    Args:
        path: ``Annotations/<id>.xml``.
        class_names: the dataset's classes, background first.

    Returns:
        ``(labels, difficult_only)``: multi-hot ``(K,)`` int32 over the
        ``K = len(class_names) - 1`` foreground classes (1 for every class
        with an ``<object>``, difficult or not), and ``(K,)`` bool, True
        where every object of the class is difficult.
    """
    root = _parse(path)
    index = {name: k for k, name in enumerate(class_names[1:])}
    n = len(index)
    plain, difficult = np.zeros(n, bool), np.zeros(n, bool)
    for obj in root.findall('object'):
        name = (obj.findtext('name') or '').strip()
        if name not in index:
            raise DatasetError('%s: object %r is not one of the %d classes '
                               '(%s)' % (path, name[:40], n,
                                         ', '.join(class_names[1:])))
        (difficult if _difficult(obj, path) else plain)[index[name]] = True
    return (plain | difficult).astype(np.int32), difficult & ~plain
