using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace Llama.Compiled.Generator.Model;

/// <summary>
/// A location as plain values: <see cref="Location"/> holds a syntax tree, which would keep
/// old compilations alive and defeat the pipeline's caching.
/// </summary>
internal sealed record LocationInfo(string FilePath, TextSpan Span, LinePositionSpan LineSpan)
{
    public Location ToLocation() => Location.Create(FilePath, Span, LineSpan);

    public static LocationInfo? From(Location? location) =>
        location is null || location.SourceTree is null
            ? null
            : new LocationInfo(location.SourceTree.FilePath, location.SourceSpan, location.GetLineSpan().Span);

    public static LocationInfo InText(string filePath, SourceText text, TextSpan span) =>
        new(filePath, span, text.Lines.GetLinePositionSpan(span));
}

/// <summary>
/// Where a diagnostic of the planning steps points in C#: those steps see no C# locations (see <see cref="ModelTarget"/>),
/// so they name the attribute argument, and the diagnostics output finds it in the class's <see cref="TargetLocations"/>.
/// </summary>
internal enum DiagnosticAnchor
{
    /// <summary><see cref="DiagnosticInfo.Location"/> says where (a class problem, or a line of the config file).</summary>
    Location,

    /// <summary>The attribute's config-path argument.</summary>
    ConfigPathArgument,

    /// <summary>The attribute's <c>MaxContext</c> argument (the config-path argument if it is not written).</summary>
    MaxContextArgument,
}

/// <summary>A diagnostic to report, as values: its descriptor's id, where, and the message arguments.</summary>
internal sealed record DiagnosticInfo(string Id, LocationInfo? Location, EquatableArray<string> MessageArgs, DiagnosticAnchor Anchor = DiagnosticAnchor.Location)
{
    public static DiagnosticInfo Create(DiagnosticDescriptor descriptor, LocationInfo? location, params string[] messageArgs) =>
        new(descriptor.Id, location, new EquatableArray<string>(messageArgs));

    /// <summary>A diagnostic at an argument of the class's attribute, resolved when reported.</summary>
    public static DiagnosticInfo AtAttribute(DiagnosticDescriptor descriptor, DiagnosticAnchor anchor, params string[] messageArgs) =>
        new(descriptor.Id, null, new EquatableArray<string>(messageArgs), anchor);

    public Diagnostic ToDiagnostic(TargetLocations? locations = null)
    {
        object[] args = new object[MessageArgs.Count];
        for (int i = 0; i < args.Length; i++)
            args[i] = MessageArgs[i];
        LocationInfo? where = Anchor switch
        {
            DiagnosticAnchor.ConfigPathArgument => locations?.ConfigPathArgument,
            DiagnosticAnchor.MaxContextArgument => locations?.MaxContextArgument ?? locations?.ConfigPathArgument,
            _ => Location,
        };
        return Diagnostic.Create(Diagnostics.ById(Id), where?.ToLocation() ?? Microsoft.CodeAnalysis.Location.None, args);
    }
}
