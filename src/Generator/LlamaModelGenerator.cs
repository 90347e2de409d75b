using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Text;
using System.Threading;
using Llama.Compiled.Generator.Model;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Text;

namespace Llama.Compiled.Generator;

/// <summary>
/// The pipeline only, in two outputs as System.Text.Json's generator has them. Source: [LlamaModel] classes as
/// location-free <see cref="ModelTarget"/>s, combined with the JSON AdditionalFiles (configs, and the GGUF headers that
/// build/Llama.Compiled.targets writes), parsed into a
/// <see cref="ModelSpec"/>, planned into a <see cref="ForwardPlan"/>, emitted. Diagnostics: the class's own problems
/// and the planning steps' diagnostics, placed at the attribute's arguments where they point there. Every value that
/// flows between steps is equatable and the source side holds no locations, so an edit that changes neither the
/// class's declaration nor its config — moving it down its file included — reuses the cached source.
/// </summary>
[Generator(LanguageNames.CSharp)]
public sealed class LlamaModelGenerator : IIncrementalGenerator
{
    private const string AttributeName = "Llama.Compiled.LlamaModelAttribute";

    /// <summary>Step names, for incrementality tests.</summary>
    internal static class Steps
    {
        public const string TargetResults = nameof(TargetResults);
        public const string Targets = nameof(Targets);
        public const string ConfigFiles = nameof(ConfigFiles);
        public const string Plans = nameof(Plans);
        public const string Emitted = nameof(Emitted);
    }

    /// <inheritdoc/>
    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        IncrementalValuesProvider<TargetResult> targetResults = context.SyntaxProvider
            .ForAttributeWithMetadataName(
                AttributeName,
                static (node, _) => node is ClassDeclarationSyntax,
                static (ctx, ct) => TargetParser.Parse(ctx, ct))
            .WithTrackingName(Steps.TargetResults);

        IncrementalValuesProvider<ModelTarget> targets = targetResults
            .Select(static (result, _) => result.Target)
            .Where(static target => target is not null)
            .Select(static (target, _) => target!)
            .WithTrackingName(Steps.Targets);

        IncrementalValueProvider<EquatableArray<ConfigFile>> configFiles = context.AdditionalTextsProvider
            .Where(static text => text.Path.EndsWith(".json", System.StringComparison.OrdinalIgnoreCase)
                || text.Path.EndsWith(".gguf", System.StringComparison.OrdinalIgnoreCase))
            .Select(static (text, ct) => ReadConfigFile(text, ct))
            .Collect()
            .Select(static (files, _) => EquatableArray.From(files))
            .WithTrackingName(Steps.ConfigFiles);

        IncrementalValuesProvider<PlanResult> plans = targets
            .Combine(configFiles)
            .Select(static (pair, _) => Compile(pair.Left, pair.Right))
            .WithTrackingName(Steps.Plans);

        // Source: the plans that succeeded.
        IncrementalValuesProvider<ForwardPlan> emitted = plans
            .Select(static (result, _) => result.Plan)
            .Where(static plan => plan is not null)
            .Select(static (plan, _) => plan!)
            .WithTrackingName(Steps.Emitted);
        context.RegisterSourceOutput(emitted, static (spc, plan) =>
        {
            spc.AddSource(plan.Target.HintName + ".g.cs", SourceText.From(Emitter.EmitModel(plan), Encoding.UTF8));
            spc.AddSource(plan.Target.HintName + ".Kernels.g.cs", SourceText.From(Emitter.EmitKernels(plan), Encoding.UTF8));
        });

        // Diagnostics: each class's own, then its plan's, placed with the class's current locations.
        context.RegisterSourceOutput(targetResults.Combine(plans.Collect()), static (spc, pair) =>
        {
            TargetResult result = pair.Left;
            foreach (DiagnosticInfo diagnostic in result.Diagnostics)
                spc.ReportDiagnostic(diagnostic.ToDiagnostic(result.Locations));
            if (result.Target is null)
                return;
            foreach (PlanResult plan in pair.Right)
            {
                if (!plan.Target.Equals(result.Target))
                    continue;
                foreach (DiagnosticInfo diagnostic in plan.Diagnostics)
                    spc.ReportDiagnostic(diagnostic.ToDiagnostic(result.Locations));
                break;
            }
        });
    }

    /// <summary>Finds the target's config, parses and plans it; any problem becomes a diagnostic.</summary>
    private static PlanResult Compile(ModelTarget target, EquatableArray<ConfigFile> configFiles)
    {
        var diagnostics = new List<DiagnosticInfo>();
        ConfigFile? config = ConfigLocator.Find(target, configFiles, diagnostics);
        if (config is null)
            return new PlanResult(target, null, EquatableArray.From(diagnostics));

        ModelSpec? spec;
        switch (config.Kind)
        {
            case ConfigKind.GgufHeader:
                spec = GgufHeaderParser.Parse(config, target.MaxContext, diagnostics);
                break;
            case ConfigKind.Gguf:
                diagnostics.Add(GgufHeaderParser.NotRead(config));
                spec = null;
                break;
            default:
                spec = ConfigParser.Parse(config, target.MaxContext, diagnostics);
                break;
        }
        ForwardPlan? plan = spec is null ? null : ForwardPlanner.Plan(target, target.ConfigPath, spec);
        return new PlanResult(target, plan, EquatableArray.From(diagnostics));
    }

    /// <summary>
    /// A config.json as it is; a GGUF header under the path of the GGUF it was read from, which is what the attribute
    /// names; a .gguf item by its path only: its text is never read (the file may be many GB, and only the header is needed).
    /// </summary>
    private static ConfigFile ReadConfigFile(AdditionalText text, CancellationToken cancellationToken)
    {
        if (text.Path.EndsWith(".gguf", System.StringComparison.OrdinalIgnoreCase))
            return new ConfigFile(NormalizePath(text.Path), "", ConfigKind.Gguf);
        string content = text.GetText(cancellationToken)?.ToString() ?? "";
        if (!text.Path.EndsWith(GgufHeaderParser.FileSuffix, System.StringComparison.OrdinalIgnoreCase))
            return new ConfigFile(NormalizePath(text.Path), content);
        return new ConfigFile(NormalizePath(GgufHeaderParser.GgufPathOf(content) ?? text.Path), content, ConfigKind.GgufHeader);
    }

    internal static string NormalizePath(string path) => path.Replace('\\', '/');

    /// <summary>The outcome for one [LlamaModel] class: a plan to emit, or diagnostics, or both.</summary>
    internal sealed record PlanResult(ModelTarget Target, ForwardPlan? Plan, EquatableArray<DiagnosticInfo> Diagnostics);
}
