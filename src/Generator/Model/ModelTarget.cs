namespace Llama.Compiled.Generator.Model;

/// <summary>
/// The class a <c>[LlamaModel]</c> attribute is on, as plain values (no symbols or syntax), and
/// what the attribute asks for.
/// </summary>
/// <param name="Namespace">The class's namespace, or null for the global namespace.</param>
/// <param name="ClassName">The class's simple name.</param>
/// <param name="ContainingTypes">Declarations of the enclosing types, outermost first (e.g. "partial class Outer").</param>
/// <param name="HintName">A unique, file-name-safe name for the generated files.</param>
/// <param name="ConfigPath">The config path as written in the attribute.</param>
/// <param name="SourceDirectory">Folder of the file holding the attribute, '/'-separated ("" if unknown).</param>
/// <param name="MaxContext">The attribute's <c>MaxContext</c> (0 = take the config's).</param>
/// <param name="Weights">The attribute's <c>Weights</c>: the format the kernels compute with.</param>
/// <param name="AttributeLocation">The attribute's config-path argument, for diagnostics.</param>
/// <param name="MaxContextLocation">The <c>MaxContext</c> argument, if given.</param>
/// <param name="Diagnostics">Problems with the class itself (not partial, generic, ...).</param>
internal sealed record ModelTarget(
    string? Namespace,
    string ClassName,
    EquatableArray<string> ContainingTypes,
    string HintName,
    string ConfigPath,
    string SourceDirectory,
    int MaxContext,
    ComputeFormat Weights,
    LocationInfo? AttributeLocation,
    LocationInfo? MaxContextLocation,
    EquatableArray<DiagnosticInfo> Diagnostics);

/// <summary>An AdditionalFiles item that may be a model config: its path ('/'-separated) and text.</summary>
internal sealed record ConfigFile(string Path, string Text);

/// <summary>Mirror of Llama.Compiled.WeightFormat (same values); the generator does not load the attributes assembly.</summary>
internal enum ComputeFormat
{
    F32 = 0,
    F16 = 1,
    Q8_0 = 2,
    Q4_0 = 3,
}
