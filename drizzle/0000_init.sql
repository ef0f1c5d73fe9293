CREATE TABLE `documents` (
	`id` text PRIMARY KEY NOT NULL,
	`type` text NOT NULL,
	`name` text NOT NULL,
	`content` text NOT NULL,
	`version` integer DEFAULT 1 NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	CONSTRAINT "documents_type_check" CHECK("type" IN ('persona', 'template', 'mood', 'scenario')),
	CONSTRAINT "documents_content_json_check" CHECK(json_valid("documents"."content") AND json_type("documents"."content") = 'object'),
	CONSTRAINT "documents_version_check" CHECK("documents"."version" >= 1)
);
--> statement-breakpoint
CREATE UNIQUE INDEX `documents_type_name_uq` ON `documents` (`type`,`name`);--> statement-breakpoint
CREATE INDEX `documents_type_updated_idx` ON `documents` (`type`,`updated_at`);--> statement-breakpoint
CREATE INDEX `documents_name_idx` ON `documents` (`name`);--> statement-breakpoint
CREATE INDEX `documents_updated_idx` ON `documents` (`updated_at`);