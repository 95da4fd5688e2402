"""PASCAL VOC object annotations (``Annotations/<id>.xml``) as image-level
labels. The XML is data from outside: parsed with defusedxml, refusing any
DTD, after a size check; every problem is a one-line :class:`DatasetError`
naming the file. ``difficult`` objects count as present: training needs a 0
or a 1 where the devkit says "difficult" (docs/GAIN.md).
"""
import defusedxml
import defusedxml.ElementTree
from datasets.voc import multi_hot
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


def read_annotation(path, class_names):
    """Multi-hot ``(K,)`` int32 (:func:`datasets.voc.multi_hot`) of the
    classes with an ``<object>`` in the annotation file ``path``."""
    return multi_hot([(obj.findtext('name') or '').strip()
                      for obj in _parse(path).findall('object')],
                     class_names, path, 'object')
