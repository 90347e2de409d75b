using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Llama.Compiled.Generator.Model;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace Llama.Compiled.Generator;

/// <summary>
/// Reads what the pipeline needs from a [LlamaModel] class into a <see cref="TargetResult"/>: the location-free
/// <see cref="ModelTarget"/> (names as strings, the attribute's arguments), where those arguments are, and problems
/// with the class as diagnostics.
/// </summary>
internal static class TargetParser
{
    public static TargetResult Parse(GeneratorAttributeSyntaxContext ctx, CancellationToken ct)
    {
        var type = (INamedTypeSymbol)ctx.TargetSymbol;
        var syntax = (ClassDeclarationSyntax)ctx.TargetNode;
        var diagnostics = new List<DiagnosticInfo>();
        LocationInfo? classLocation = LocationInfo.From(syntax.Identifier.GetLocation());

        AttributeData attribute = ctx.Attributes[0];
        var attributeSyntax = attribute.ApplicationSyntaxReference?.GetSyntax(ct) as AttributeSyntax;
        LocationInfo? attributeLocation = LocationInfo.From(
            attributeSyntax?.ArgumentList?.Arguments.FirstOrDefault()?.GetLocation() ?? attributeSyntax?.GetLocation());

        string configPath = attribute.ConstructorArguments.Length == 1 && attribute.ConstructorArguments[0].Value is string path
            ? path
            : "";
        if (configPath.Trim().Length == 0)
            diagnostics.Add(DiagnosticInfo.Create(Diagnostics.InvalidAttribute, attributeLocation, "configPath", "give the path of the model's config.json"));

        int maxContext = 0;
        ComputeFormat weights = ComputeFormat.F32;
        LocationInfo? maxContextLocation = null;
        foreach (KeyValuePair<string, TypedConstant> named in attribute.NamedArguments)
        {
            if (named.Key == "MaxContext" && named.Value.Value is int value)
            {
                maxContext = value;
                maxContextLocation = LocationInfo.From(attributeSyntax?.ArgumentList?.Arguments
                    .FirstOrDefault(a => a.NameEquals?.Name.Identifier.ValueText == "MaxContext")?.GetLocation());
            }
            else if (named.Key == "Weights" && named.Value.Value is int format)
            {
                if (System.Enum.IsDefined(typeof(ComputeFormat), format))
                    weights = (ComputeFormat)format;
                else
                    diagnostics.Add(DiagnosticInfo.Create(Diagnostics.InvalidAttribute, attributeLocation, "Weights",
                        $"{format} is not a WeightFormat; use F32, F16, a block format (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) or a llama.cpp mix (Q4_K_M, Q4_K_S, Q5_K_M, Q5_K_S, MostlyQ4_0, MostlyQ4_1, MostlyQ5_0, MostlyQ5_1)"));
            }
        }

        // AllowMultiple = false makes a second attribute a compile error too; say what to do instead.
        if (ctx.Attributes.Length > 1)
            diagnostics.Add(DiagnosticInfo.Create(Diagnostics.DuplicateAttribute, classLocation, type.Name));
        if (type.IsStatic || type.IsAbstract)
            diagnostics.Add(DiagnosticInfo.Create(Diagnostics.InvalidClassKind, classLocation, type.Name, type.IsStatic ? "static" : "abstract"));

        var containers = new List<string>();
        bool allPartial = IsPartial(syntax);
        bool generic = type.IsGenericType;
        for (INamedTypeSymbol? outer = type.ContainingType; outer is not null; outer = outer.ContainingType)
        {
            generic |= outer.IsGenericType;
            var outerSyntax = outer.DeclaringSyntaxReferences.Select(r => r.GetSyntax(ct)).OfType<TypeDeclarationSyntax>().FirstOrDefault();
            allPartial &= outerSyntax is not null && IsPartial(outerSyntax);
            containers.Insert(0, "partial " + Keyword(outer) + " " + outer.Name);
        }
        if (generic)
            diagnostics.Add(DiagnosticInfo.Create(Diagnostics.Generic, classLocation, type.Name));
        else if (!allPartial)
            diagnostics.Add(DiagnosticInfo.Create(Diagnostics.NotPartial, classLocation, type.Name));

        string? ns = type.ContainingNamespace.IsGlobalNamespace ? null : type.ContainingNamespace.ToDisplayString();
        string hintName = string.Join(".", new[] { ns }.Concat(containers.Select(c => c.Substring(c.LastIndexOf(' ') + 1))).Concat(new[] { type.Name })
            .Where(part => !string.IsNullOrEmpty(part)));
        string filePath = LlamaModelGenerator.NormalizePath(syntax.SyntaxTree.FilePath);
        int slash = filePath.LastIndexOf('/');

        var target = new ModelTarget(
            ns,
            type.Name,
            EquatableArray.From(containers),
            hintName,
            configPath,
            slash >= 0 ? filePath.Substring(0, slash) : "",
            maxContext,
            weights);
        return new TargetResult(diagnostics.Count == 0 ? target : null, new TargetLocations(attributeLocation, maxContextLocation), EquatableArray.From(diagnostics));
    }

    private static bool IsPartial(TypeDeclarationSyntax syntax) => syntax.Modifiers.Any(SyntaxKind.PartialKeyword);

    private static string Keyword(INamedTypeSymbol type) => type switch
    {
        { IsRecord: true, TypeKind: TypeKind.Struct } => "record struct",
        { IsRecord: true } => "record",
        { TypeKind: TypeKind.Struct } => "struct",
        { TypeKind: TypeKind.Interface } => "interface",
        _ => "class",
    };
}
