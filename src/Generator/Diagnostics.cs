using System.Collections.Generic;
using Microsoft.CodeAnalysis;

namespace Llama.Compiled.Generator;

/// <summary>
/// Every diagnostic the generator reports. Each message names what is wrong and says what to do;
/// the catalogue is documented in docs/diagnostics.md (one section per id, which each descriptor's help link
/// opens) and tracked in AnalyzerReleases.Shipped.md.
/// </summary>
internal static class Diagnostics
{
    private const string Category = "Llama.Compiled";

    /// <summary>
    /// The page that documents every id; <see cref="HelpLink"/> appends the id's anchor (its heading, lower-cased).
    /// Relative to the repository root: the repository has no public address yet. When it has one, this is the
    /// one place to put it (e.g. https://github.com/&lt;owner&gt;/Llama.Compiled/blob/main/docs/diagnostics.md).
    /// </summary>
    public const string HelpLinkBase = "docs/diagnostics.md";

    /// <summary>The help link of <paramref name="id"/>: <c>docs/diagnostics.md#llc0001</c> for LLC0001.</summary>
    public static string HelpLink(string id) => HelpLinkBase + "#" + id.ToLowerInvariant();

    public static readonly DiagnosticDescriptor ConfigNotFound = new(
        "LLC0001",
        "Model config is not an AdditionalFiles item",
        "The model config '{0}' is not among this project's AdditionalFiles; add <AdditionalFiles Include=\"{0}\" /> to the project file (paths are relative to the file with the attribute, or a suffix of an AdditionalFiles item)",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: HelpLink("LLC0001"));

    public static readonly DiagnosticDescriptor InvalidJson = new(
        "LLC0002",
        "Model config is not valid JSON",
        "The model config '{0}' is not valid JSON: {1}",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: HelpLink("LLC0002"));

    public static readonly DiagnosticDescriptor MissingKey = new(
        "LLC0003",
        "Model config lacks a required key",
        "The model config '{0}' has no '{1}'; add it ({2})",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: HelpLink("LLC0003"));

    public static readonly DiagnosticDescriptor WrongType = new(
        "LLC0004",
        "Model config value has the wrong type",
        "'{1}' in the model config '{0}' must be {2}, but is {3}",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: HelpLink("LLC0004"));

    public static readonly DiagnosticDescriptor InvalidValue = new(
        "LLC0005",
        "Model config value is out of range or inconsistent",
        "'{1}' in the model config '{0}' is invalid: {2}",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: HelpLink("LLC0005"));

    public static readonly DiagnosticDescriptor Unsupported = new(
        "LLC0006",
        "Model config uses a feature the compiler does not support",
        "'{1}' in the model config '{0}' is not supported: {2}",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: HelpLink("LLC0006"));

    public static readonly DiagnosticDescriptor NotPartial = new(
        "LLC0007",
        "Model class must be partial",
        "'{0}' must be declared partial (as must every type containing it) so the generator can add the compiled model to it",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: HelpLink("LLC0007"));

    public static readonly DiagnosticDescriptor Generic = new(
        "LLC0008",
        "Model class cannot be generic",
        "'{0}' is generic or nested in a generic type; declare the model on a non-generic class",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: HelpLink("LLC0008"));

    public static readonly DiagnosticDescriptor AmbiguousConfig = new(
        "LLC0009",
        "Model config path matches several AdditionalFiles items",
        "The model config '{0}' matches several AdditionalFiles items ({1}); write a longer path that names one",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: HelpLink("LLC0009"));

    public static readonly DiagnosticDescriptor InvalidAttribute = new(
        "LLC0010",
        "Invalid [LlamaModel] argument",
        "The [LlamaModel] argument {0} is invalid: {1}",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: HelpLink("LLC0010"));

    public static readonly DiagnosticDescriptor InvalidClassKind = new(
        "LLC0011",
        "Model class cannot be static or abstract",
        "'{0}' is {1}; the generator creates instances of the model class, so declare it as a non-static, non-abstract class",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: HelpLink("LLC0011"));

    public static readonly DiagnosticDescriptor SlidingWindow = new(
        "LLC0012",
        "Sliding window is smaller than the compiled context",
        "The model config '{0}' has sliding_window {1}, smaller than the compiled context {2}; sliding-window attention is not supported, so compile for at most the window: [LlamaModel(..., MaxContext = {1})]",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: HelpLink("LLC0012"));

    public static readonly DiagnosticDescriptor DuplicateAttribute = new(
        "LLC0013",
        "Only one [LlamaModel] per class",
        "'{0}' has more than one [LlamaModel] attribute; a class compiles exactly one model, declare one class per model",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: HelpLink("LLC0013"));

    public static readonly DiagnosticDescriptor GgufHeaderNotRead = new(
        "LLC0014",
        "GGUF header was not read at build time",
        "The GGUF file '{0}' cannot be compiled from: {1}",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: HelpLink("LLC0014"));

    public static readonly DiagnosticDescriptor UnsupportedTensorType = new(
        "LLC0015",
        "GGUF tensor type has no kernels",
        "Tensor '{1}' in the GGUF file '{0}' is stored as {2}, which the compiler has no kernels for; supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K (requantize the model with llama-quantize)",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: HelpLink("LLC0015"));

    public static readonly DiagnosticDescriptor TensorShape = new(
        "LLC0016",
        "GGUF tensor is missing or does not match the hyperparameters",
        "Tensor '{1}' in the GGUF file '{0}' {2}",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: HelpLink("LLC0016"));

    private static readonly Dictionary<string, DiagnosticDescriptor> s_byId = Index(
        ConfigNotFound, InvalidJson, MissingKey, WrongType, InvalidValue, Unsupported,
        NotPartial, Generic, AmbiguousConfig, InvalidAttribute, InvalidClassKind, SlidingWindow, DuplicateAttribute,
        GgufHeaderNotRead, UnsupportedTensorType, TensorShape);

    public static DiagnosticDescriptor ById(string id) => s_byId[id];

    private static Dictionary<string, DiagnosticDescriptor> Index(params DiagnosticDescriptor[] descriptors)
    {
        var map = new Dictionary<string, DiagnosticDescriptor>();
        foreach (DiagnosticDescriptor d in descriptors)
            map.Add(d.Id, d);
        return map;
    }
}
